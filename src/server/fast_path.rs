//! The Registry service's calls go to it directly, in front of the axum router that serves
//! everything else on the port (the other gRPC services, the REST edge, the console).
//!
//! Why: Registry's unary RPCs are the hot path (gateways resolve and read mappings on it), and
//! the router costs each of them a route lookup, URL-parameter extraction and two more boxed
//! body conversions (tonic's body into axum's and back) that a direct call does not need.
//!
//! What stays the same: the request reaches the same service (the interceptor-wrapped
//! `RegistryServer`) with the same headers and extensions, after the same layers
//! ([`crate::audit::RequestIdLayer`], the gRPC metrics, `mark_served`, the status rewrite),
//! since this layer is the innermost one. A path is taken here exactly when the router would
//! have routed it to Registry (`/mapreg.v1.Registry/` and at least one more character: the
//! router's `/{service}/{*rest}`); any other request goes to the router as before.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::util::{Either, MapResponse};
use tower::{Service, ServiceExt};

/// The tower layer that puts [`FastPath`] in front of the router.
#[derive(Clone)]
pub(crate) struct FastPathLayer<R> {
    name: &'static str,
    service: R,
}

impl<R> FastPathLayer<R> {
    /// Calls with a path under `/{name}/` go to `service`, which must be always ready (as
    /// tonic's generated servers, and interceptors around them, are).
    pub(crate) fn new(name: &'static str, service: R) -> Self {
        FastPathLayer { name, service }
    }
}

/// Whether `path` is `/{name}/` and at least one more character.
fn under(path: &str, name: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty())
}

impl<R: Clone, S> tower::Layer<S> for FastPathLayer<R> {
    type Service = FastPath<R, S>;
    fn layer(&self, inner: S) -> Self::Service {
        FastPath {
            name: self.name,
            service: self.service.clone(),
            inner,
        }
    }
}

/// The service of [`FastPathLayer`]: `service` for its own paths, else `inner` (the router).
#[derive(Clone)]
pub(crate) struct FastPath<R, S> {
    name: &'static str,
    service: R,
    inner: S,
}

/// A direct response's body, boxed into the router's body type (as the router does).
type IntoBody<B> = fn(http::Response<B>) -> http::Response<Body>;

fn into_body<B>(resp: http::Response<B>) -> http::Response<Body>
where
    B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    resp.map(Body::new)
}

impl<R, RB, S> Service<http::Request<Body>> for FastPath<R, S>
where
    R: Service<http::Request<Body>, Response = http::Response<RB>, Error = Infallible> + Clone,
    RB: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tower::util::future::EitherResponseFuture<
        tower::util::future::MapResponseFuture<R::Future, IntoBody<RB>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if under(req.uri().path(), self.name) {
            let direct = self.service.clone().map_response(into_body as IntoBody<RB>);
            Either::<MapResponse<R, IntoBody<RB>>, &mut S>::Left(direct).call(req)
        } else {
            Either::<MapResponse<R, IntoBody<RB>>, &mut S>::Right(&mut self.inner).call(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with its name in a header.
    #[derive(Clone)]
    struct Named(&'static str);

    impl Service<http::Request<Body>> for Named {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let mut resp = http::Response::new(Body::empty());
            resp.headers_mut()
                .insert("served-by", http::HeaderValue::from_static(self.0));
            std::future::ready(Ok(resp))
        }
    }

    #[tokio::test]
    async fn only_the_services_own_paths_take_the_fast_path() {
        use tower::Layer;
        let layer = FastPathLayer::new("mapreg.v1.Registry", Named("registry"));
        let mut svc = layer.layer(Named("router"));
        for (path, expected) in [
            ("/mapreg.v1.Registry/GetApiMapping", "registry"),
            ("/mapreg.v1.Registry/", "router"),
            ("/mapreg.v1.Registry", "router"),
            ("/mapreg.v1.RegistryX/GetApi", "router"),
            ("/mapreg.v1.ChangeFeed/Watch", "router"),
            ("/v2/apis", "router"),
            ("/", "router"),
        ] {
            let req = http::Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let resp = svc
                .ready()
                .await
                .expect("ready")
                .call(req)
                .await
                .expect("resp");
            assert_eq!(resp.headers()["served-by"], expected, "{path}");
        }
    }
}
