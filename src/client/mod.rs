//! Client-side libraries for gateways: [`MappingCache`], an in-memory replica of the registry
//! kept current by `ChangeFeed.Watch`, answering route resolution locally; [`connect`],
//! how every mapreg client reaches a server (TLS, CA bundle, client certificate);
//! [`failover`], how a client given several endpoints moves from one to the next; and
//! [`every_page`] (with [`page`]), how a caller reads a whole list.

pub mod cache;
pub mod connect;
pub mod failover;
pub mod report;

pub use cache::{CacheOptions, CacheStatus, MappingCache, Resolution, ResolveError};

/// Reads a whole list, page after page: `call` asks for the page with the given token (`""`
/// for the first), `take` splits its answer into its items and the next page's token; it stops
/// at a page with no next token and returns every page's items in order. The first error ends
/// the reading and is returned as it is.
pub async fn every_page<P, T, E, F>(
    mut call: impl FnMut(String) -> F,
    mut take: impl FnMut(P) -> (Vec<T>, String),
) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<P, E>>,
{
    let mut out = Vec::new();
    let mut next_token = String::new();
    loop {
        let (items, next) = take(call(next_token).await?);
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        next_token = next;
    }
}

/// A page of a list as the registry answers it.
pub trait Page {
    /// What the list holds.
    type Item;
    /// The page's items, in order, and the next page's token (`""` after the last page).
    fn split(self) -> (Vec<Self::Item>, String);
}

macro_rules! pages {
    ($($response:ty => $item:ty),* $(,)?) => {$(
        impl Page for $response {
            type Item = $item;
            fn split(self) -> (Vec<$item>, String) {
                (self.items, self.next_token)
            }
        }
    )*};
}

pages! {
    crate::pb::GetApisResponse => crate::pb::Api,
    crate::pb::GetStagesResponse => crate::pb::Stage,
    crate::pb::GetDomainNamesResponse => crate::pb::DomainName,
    crate::pb::GetApiMappingsResponse => crate::pb::ApiMapping,
}

/// [`every_page`]'s `take` for a gRPC answer: the page's items and the next page's token.
pub fn page<P: Page>(answer: tonic::Response<P>) -> (Vec<P::Item>, String) {
    answer.into_inner().split()
}
