//! Generated identifiers. All are lower-case alphanumerics, drawn from the OS-seeded thread RNG.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_id(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new `api_id`: 10 characters of `[a-z0-9]`. Uniqueness is checked by the store.
pub fn api_id() -> String {
    random_id(10)
}

/// A new `api_mapping_id`: 6 characters of `[a-z0-9]`. Uniqueness per domain is checked by the store.
pub fn api_mapping_id() -> String {
    random_id(6)
}

/// A new computed `api_gateway_domain_name`: `d-` + 10 characters + `.execute-api.mapreg.internal`.
pub fn api_gateway_domain_name() -> String {
    format!("d-{}.execute-api.mapreg.internal", random_id(10))
}

/// A new `store_id` for a fresh data dir: 20 characters, so two stores never share one.
pub fn store_id() -> String {
    random_id(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_documented_shape() {
        let id = api_id();
        assert_eq!(id.len(), 10);
        assert!(id.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(api_mapping_id().len(), 6);
        let d = api_gateway_domain_name();
        assert!(d.starts_with("d-") && d.ends_with(".execute-api.mapreg.internal"));
        assert_eq!(d.len(), 2 + 10 + ".execute-api.mapreg.internal".len());
    }
}
