//! SigV4 against vectors made by botocore's own `SigV4Auth` (service `apigateway`, region
//! `eu-west-1`, 2024-05-01T12:00:00Z), and every way a signature is refused.

use super::*;

const KEY_ID: &str = "AKIAMAPREGEXAMPLE01";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20240501T120000Z";
/// 2024-05-01T12:00:00Z.
const NOW: i64 = 1_714_564_800;
const TAG_PATH: &str = "/v2/tags/arn%3Aaws%3Aapigateway%3Aeu-west-1%3A%3A%2Fapis%2Fa1b2c3d4e5";
const BODY: &[u8] = br#"{"tags": {"team": "a"}}"#;

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn post_headers() -> http::HeaderMap {
    headers(&[
        ("content-type", "application/json"),
        ("host", "127.0.0.1:50051"),
        ("x-amz-date", AMZ_DATE),
    ])
}

fn received<'a>(h: &'a http::HeaderMap, body: &'a [u8]) -> Received<'a> {
    Received {
        method: "POST",
        raw_path: TAG_PATH,
        raw_query: None,
        headers: h,
        authority: None,
        body,
    }
}

/// botocore's Authorization header for the POST vector.
const BOTOCORE_POST: &str = "AWS4-HMAC-SHA256 Credential=AKIAMAPREGEXAMPLE01/20240501/eu-west-1/apigateway/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=74f5f4fab6b9ec9378793b751405f5986085134f167f3d052c84208406741342";

#[test]
fn accepts_what_botocore_signs() {
    let h = post_headers();
    let auth = parse_authorization(BOTOCORE_POST).expect("parses");
    assert_eq!(auth.access_key_id, KEY_ID);
    assert_eq!(auth.region, "eu-west-1");
    verify(&received(&h, BODY), &auth, SECRET, NOW).expect("botocore's signature verifies");
    // Our signer, used by tests, produces the very same header.
    let ours = sign(
        &received(&h, BODY),
        &["content-type", "host", "x-amz-date"],
        KEY_ID,
        SECRET,
        "eu-west-1",
        AMZ_DATE,
    );
    assert_eq!(ours, BOTOCORE_POST);

    // A query (decoded, re-encoded and sorted) and a header with runs of spaces, as botocore
    // canonicalizes them.
    let h = headers(&[
        ("host", "127.0.0.1:50051"),
        ("x-amz-date", AMZ_DATE),
        ("x-test", "  a   b ,  c  "),
    ]);
    let req = Received {
        method: "DELETE",
        raw_path: TAG_PATH,
        raw_query: Some("tagKeys=team&tagKeys=a%20b&tagKeys=env"),
        headers: &h,
        authority: None,
        body: b"",
    };
    let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIAMAPREGEXAMPLE01/20240501/eu-west-1/apigateway/aws4_request, SignedHeaders=host;x-amz-date;x-test, Signature=89e9566c39e5223676c6395e15ef2792ba65fde131c7c5302f756c31cd7ba410").expect("parses");
    verify(&req, &auth, SECRET, NOW).expect("botocore's signature verifies");
}

#[test]
fn canonical_uri_double_encodes_and_removes_dot_segments() {
    assert_eq!(
        canonical_uri(TAG_PATH),
        "/v2/tags/arn%253Aaws%253Aapigateway%253Aeu-west-1%253A%253A%252Fapis%252Fa1b2c3d4e5"
    );
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/v2//apis/./x/../y/"), "/v2/apis/y/");
    assert_eq!(canonical_uri("/v2/apis/$default"), "/v2/apis/%24default");
    assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
}

#[test]
fn refuses_every_broken_signature() {
    let h = post_headers();
    let auth = parse_authorization(BOTOCORE_POST).expect("parses");
    let mismatch = |r: Result<(), SigError>| matches!(r, Err(SigError::Mismatch { .. }));
    // Wrong secret, changed body, changed path, changed signed header.
    assert!(mismatch(verify(&received(&h, BODY), &auth, "wrong", NOW)));
    assert!(mismatch(verify(&received(&h, b"{}"), &auth, SECRET, NOW)));
    let mut other = received(&h, BODY);
    other.raw_path = "/v2/tags/other";
    assert!(mismatch(verify(&other, &auth, SECRET, NOW)));
    let mut changed = post_headers();
    changed.insert("content-type", http::HeaderValue::from_static("text/plain"));
    assert!(mismatch(verify(
        &received(&changed, BODY),
        &auth,
        SECRET,
        NOW
    )));
    // A signature that is not hex.
    let mut garbage = auth.clone();
    garbage.signature = "zz".into();
    assert!(mismatch(verify(&received(&h, BODY), &garbage, SECRET, NOW)));

    // Outside the 15-minute window, either way.
    let e = verify(&received(&h, BODY), &auth, SECRET, NOW + MAX_SKEW_SECS + 1).expect_err("old");
    assert!(
        matches!(&e, SigError::Invalid(m) if m.starts_with("Signature expired")),
        "{e:?}"
    );
    let e = verify(&received(&h, BODY), &auth, SECRET, NOW - MAX_SKEW_SECS - 1).expect_err("new");
    assert!(
        matches!(&e, SigError::Invalid(m) if m.starts_with("Signature not yet current")),
        "{e:?}"
    );
    assert!(verify(&received(&h, BODY), &auth, SECRET, NOW + MAX_SKEW_SECS).is_ok());

    // Wrong service, terminator, scope date.
    for (field, value) in [
        ("service", "execute-api"),
        ("terminator", "aws5"),
        ("date", "20240502"),
    ] {
        let mut a = auth.clone();
        match field {
            "service" => a.service = value.into(),
            "terminator" => a.terminator = value.into(),
            _ => a.date = value.into(),
        }
        assert!(
            matches!(
                verify(&received(&h, BODY), &a, SECRET, NOW),
                Err(SigError::Invalid(_))
            ),
            "{field}"
        );
    }
    // host or x-amz-date not signed; no X-Amz-Date.
    let mut a = auth.clone();
    a.signed_headers = vec!["content-type".into(), "x-amz-date".into()];
    assert!(matches!(
        verify(&received(&h, BODY), &a, SECRET, NOW),
        Err(SigError::Incomplete(_))
    ));
    let no_date = headers(&[("host", "127.0.0.1:50051")]);
    assert!(matches!(
        verify(&received(&no_date, BODY), &auth, SECRET, NOW),
        Err(SigError::Incomplete(_))
    ));
}

#[test]
fn content_sha256_must_be_the_body_hash() {
    let body_hash = hex::encode(Sha256::digest(BODY));
    let mut h = post_headers();
    h.insert(
        "x-amz-content-sha256",
        http::HeaderValue::from_str(&body_hash).expect("hex"),
    );
    let names = ["content-type", "host", "x-amz-content-sha256", "x-amz-date"];
    let signed = sign(
        &received(&h, BODY),
        &names,
        KEY_ID,
        SECRET,
        "eu-west-1",
        AMZ_DATE,
    );
    let auth = parse_authorization(&signed).expect("parses");
    verify(&received(&h, BODY), &auth, SECRET, NOW).expect("declared hash is the body's");
    // A body that is not what the signed header declares.
    let r = verify(&received(&h, b"{}"), &auth, SECRET, NOW);
    assert_eq!(r, Err(SigError::ContentSha256Mismatch));
    h.insert(
        "x-amz-content-sha256",
        http::HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    assert!(matches!(
        verify(&received(&h, BODY), &auth, SECRET, NOW),
        Err(SigError::Incomplete(_))
    ));
}

#[test]
fn parses_and_refuses_authorization_headers() {
    for bad in [
        "",
        "Basic abc",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=/20240501/r/apigateway/aws4_request, SignedHeaders=host, Signature=00",
    ] {
        assert!(
            matches!(parse_authorization(bad), Err(SigError::Incomplete(_))),
            "{bad:?}"
        );
    }
    let a = parse_authorization("AWS4-HMAC-SHA256 Credential=K/20240501/r/apigateway/aws4_request,SignedHeaders=host;x-amz-date,Signature=ab").expect("no spaces is fine");
    assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
    assert_eq!(a.scope(), "20240501/r/apigateway/aws4_request");
}

#[test]
fn host_falls_back_to_the_authority() {
    // HTTP/2 has no Host header; the signed `host` is the :authority.
    let mut without = post_headers();
    without.remove("host");
    let mut req = received(&without, BODY);
    req.authority = Some("127.0.0.1:50051");
    let auth = parse_authorization(BOTOCORE_POST).expect("parses");
    verify(&req, &auth, SECRET, NOW).expect("authority stands in for Host");
}
