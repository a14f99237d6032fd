//! Parsers for the AWS CLI's shorthand syntax of structured flags (`--tags k1=v1,k2=v2`,
//! `--domain-name-configurations EndpointType=REGIONAL,SecurityPolicy=TLS_1_2`), each also
//! accepting the JSON form. They return `Err(message)` so clap reports a bad value as a usage
//! error (exit 252), as the AWS CLI does.

use std::collections::HashMap;

use crate::pb;

/// One `--domain-name-configurations` value, as [`parse_domain_name_configurations`] parsed it:
/// the configurations in the order given, each field the value given or left unspecified (0 or
/// empty). The parser does not check how many there are; the server refuses more than one.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainNameConfigurations(pub Vec<pb::DomainNameConfiguration>);

/// `k1=v1,k2=v2` (a value may contain `=`) or a JSON object `{"k1":"v1"}`. An empty string is no
/// tags; a key given twice is an error.
pub fn parse_tags(s: &str) -> Result<HashMap<String, String>, String> {
    let s = s.trim();
    if s.starts_with('{') {
        return serde_json::from_str(s)
            .map_err(|e| format!("expected a JSON object of string values: {e}"));
    }
    let mut tags = HashMap::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got {pair:?}"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("empty tag key in {pair:?}"));
        }
        if tags.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("tag key {k:?} given twice"));
        }
    }
    Ok(tags)
}

/// One domain name configuration in shorthand
/// (`EndpointType=REGIONAL,SecurityPolicy=TLS_1_2,CertificateArn=arn:...`), or a JSON array of
/// them (`[{"EndpointType":"EDGE"}]`), or one JSON object. Fields left out are sent unspecified:
/// the server's default on create, unchanged on update.
pub fn parse_domain_name_configurations(s: &str) -> Result<DomainNameConfigurations, String> {
    let s = s.trim();
    if s.starts_with('[') || s.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}"))?;
        let objects = match value {
            serde_json::Value::Array(items) => items,
            object => vec![object],
        };
        let configs = objects
            .iter()
            .map(|o| {
                let o = o
                    .as_object()
                    .ok_or("expected a JSON object per domain name configuration")?;
                configuration(o.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(DomainNameConfigurations(configs));
    }
    let mut fields = Vec::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got {pair:?}"))?;
        fields.push((k.trim(), Some(v.trim())));
    }
    Ok(DomainNameConfigurations(vec![configuration(
        fields.into_iter(),
    )?]))
}

/// Builds one configuration from (key, string value) pairs; `None` is a non-string JSON value.
fn configuration<'a>(
    fields: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<pb::DomainNameConfiguration, String> {
    let mut c = pb::DomainNameConfiguration::default();
    let mut seen = Vec::new();
    for (key, value) in fields {
        if seen.contains(&key) {
            return Err(format!("{key} given twice"));
        }
        seen.push(key);
        let value = value.ok_or_else(|| format!("{key} must be a string"))?;
        match key {
            "EndpointType" => c.endpoint_type = endpoint_type(value)? as i32,
            "SecurityPolicy" => c.security_policy = security_policy(value)? as i32,
            "CertificateArn" => c.certificate_arn = value.to_string(),
            other => {
                return Err(format!(
                    "unknown key {other:?}; expected EndpointType, SecurityPolicy or CertificateArn"
                ));
            }
        }
    }
    Ok(c)
}

/// `REGIONAL` or `EDGE`, any case.
pub fn endpoint_type(s: &str) -> Result<pb::EndpointType, String> {
    match s.to_ascii_uppercase().as_str() {
        "REGIONAL" => Ok(pb::EndpointType::Regional),
        "EDGE" => Ok(pb::EndpointType::Edge),
        _ => Err(format!("EndpointType {s:?} is not one of REGIONAL, EDGE")),
    }
}

/// `TLS_1_2` or `TLS_1_0`, any case.
pub fn security_policy(s: &str) -> Result<pb::SecurityPolicy, String> {
    match s.to_ascii_uppercase().as_str() {
        "TLS_1_2" => Ok(pb::SecurityPolicy::Tls12),
        "TLS_1_0" => Ok(pb::SecurityPolicy::Tls10),
        _ => Err(format!(
            "SecurityPolicy {s:?} is not one of TLS_1_2, TLS_1_0"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::validate::tag_map as tags;

    #[test]
    fn tags_shorthand() {
        assert_eq!(
            parse_tags("k1=v1,k2=v2").unwrap(),
            tags(&[("k1", "v1"), ("k2", "v2")])
        );
        assert_eq!(parse_tags("team=a=b").unwrap(), tags(&[("team", "a=b")]));
        assert_eq!(parse_tags("k=").unwrap(), tags(&[("k", "")]));
        assert_eq!(parse_tags("").unwrap(), tags(&[]));
        assert_eq!(parse_tags("k1=v1,").unwrap(), tags(&[("k1", "v1")]));
    }

    #[test]
    fn tags_json() {
        assert_eq!(
            parse_tags(r#"{"k1": "v1", "k2": "a,b"}"#).unwrap(),
            tags(&[("k1", "v1"), ("k2", "a,b")])
        );
        assert!(parse_tags(r#"{"k1": 5}"#).is_err());
        assert!(parse_tags("{").is_err());
    }

    #[test]
    fn tags_errors() {
        assert!(parse_tags("novalue").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_tags("=v").unwrap_err().contains("empty tag key"));
        assert!(parse_tags("k=1,k=2").unwrap_err().contains("twice"));
    }

    fn one(s: &str) -> pb::DomainNameConfiguration {
        let DomainNameConfigurations(mut v) = parse_domain_name_configurations(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn configuration_shorthand() {
        let c = one(
            "EndpointType=REGIONAL,SecurityPolicy=TLS_1_2,CertificateArn=arn:aws:acm:us-east-1:1:certificate/x=y",
        );
        assert_eq!(c.endpoint_type, pb::EndpointType::Regional as i32);
        assert_eq!(c.security_policy, pb::SecurityPolicy::Tls12 as i32);
        assert_eq!(c.certificate_arn, "arn:aws:acm:us-east-1:1:certificate/x=y");
        let c = one("EndpointType=edge");
        assert_eq!(c.endpoint_type, pb::EndpointType::Edge as i32);
        assert_eq!(c.security_policy, 0, "omitted field stays unspecified");
        let c = one("SecurityPolicy=TLS_1_0");
        assert_eq!(c.endpoint_type, 0);
        assert_eq!(c.security_policy, pb::SecurityPolicy::Tls10 as i32);
    }

    #[test]
    fn configuration_json() {
        let c = one(r#"[{"EndpointType":"EDGE","SecurityPolicy":"TLS_1_0"}]"#);
        assert_eq!(c.endpoint_type, pb::EndpointType::Edge as i32);
        assert_eq!(c.security_policy, pb::SecurityPolicy::Tls10 as i32);
        let c = one(r#"{"CertificateArn":"arn:x"}"#);
        assert_eq!(c.certificate_arn, "arn:x");
        let DomainNameConfigurations(v) =
            parse_domain_name_configurations(r#"[{"EndpointType":"EDGE"},{}]"#).unwrap();
        assert_eq!(v.len(), 2, "the server, not the parser, refuses two");
    }

    #[test]
    fn configuration_errors() {
        let err = |s: &str| parse_domain_name_configurations(s).unwrap_err();
        assert!(err("EndpointType=PRIVATE").contains("REGIONAL, EDGE"));
        assert!(err("SecurityPolicy=TLS_1_3").contains("TLS_1_2, TLS_1_0"));
        assert!(err("Endpoint=REGIONAL").contains("unknown key"));
        assert!(err("EndpointType").contains("KEY=VALUE"));
        assert!(err("EndpointType=EDGE,EndpointType=REGIONAL").contains("twice"));
        assert!(err(r#"[{"EndpointType": 1}]"#).contains("must be a string"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("[").contains("invalid JSON"));
    }
}
