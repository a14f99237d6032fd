//! Opaque page tokens for keyset pagination.
//!
//! A token names the list it belongs to (and its parent: an API or a domain) and the sort key of
//! the last item returned. Walking pages during concurrent writes therefore never returns an item
//! twice and never skips one that existed throughout. A token of another list, or garbage, is
//! refused with INVALID_ARGUMENT naming `next_token`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::state::MAX_PAGE_BYTES;
use crate::domain::validate;
use crate::error::{Error, Result};
use crate::store::Page;

const VERSION: &str = "v1";

/// Builds the next page token, or "" when there is no next page.
pub fn encode(list: &str, parent: &str, after: Option<&str>) -> String {
    match after {
        Some(after) => URL_SAFE_NO_PAD.encode(format!("{VERSION}\0{list}\0{parent}\0{after}")),
        None => String::new(),
    }
}

/// The page a request asks for: size from `max_results`, start from `next_token`, at most
/// [`MAX_PAGE_BYTES`] of items.
pub fn page(list: &str, parent: &str, max_results: i32, next_token: &str) -> Result<Page> {
    let size = validate::page_size(max_results)?;
    if next_token.is_empty() {
        return Ok(Page {
            size,
            after: None,
            max_bytes: MAX_PAGE_BYTES,
        });
    }
    let bad = || {
        Error::invalid(
            "next_token",
            "next_token is malformed or belongs to another list; pass the next_token of the previous page unchanged",
        )
    };
    if next_token.len() > 4096 {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(next_token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(4, '\0');
    let (Some(v), Some(l), Some(p), Some(after)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    // Only mapping keys can be empty (the root mapping); no other list has an empty sort key.
    let impossible_after = after.is_empty() && list != "mappings";
    if v != VERSION || l != list || p != parent || impossible_after {
        return Err(bad());
    }
    Ok(Page {
        size,
        after: Some(after.to_string()),
        max_bytes: MAX_PAGE_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_their_list() {
        let t = encode("mappings", "a.com", Some("orders/v1"));
        let p = page("mappings", "a.com", 0, &t).expect("valid");
        assert_eq!((p.size, p.after.as_deref()), (100, Some("orders/v1")));
        assert!(page("mappings", "b.com", 0, &t).is_err());
        assert!(page("apis", "", 0, &t).is_err());
        assert!(page("apis", "", 0, "!!!").is_err());
        assert!(page("apis", "", 1001, "").is_err());
        assert_eq!(encode("apis", "", None), "");
        // The root mapping's key is "": a page may end on it.
        let root = encode("mappings", "a.com", Some(""));
        let p = page("mappings", "a.com", 1, &root).expect("valid");
        assert_eq!(p.after.as_deref(), Some(""));
    }
}
