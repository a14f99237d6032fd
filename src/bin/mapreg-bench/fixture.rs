//! The records a scenario needs on the server under test.

use anyhow::Result;
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::*;
use tonic::transport::Channel;

use crate::harness::Mapreg;

/// An HTTP API with stage `test` and a domain name of its own.
pub struct Fixture {
    /// The API's id.
    pub api_id: String,
    /// The domain; unique per run, so an external server's records are not touched.
    pub domain: String,
    /// The revision of the fixture's last write.
    pub revision: u64,
}

impl Fixture {
    /// Creates the API, its stage and a domain `<label>-<unique>.bench.example.com`.
    pub async fn create(m: &Mapreg, ch: &Channel, label: &str) -> Result<Fixture> {
        let mut c = RegistryClient::new(ch.clone());
        let unique = format!(
            "{:x}{:x}",
            std::process::id(),
            crate::harness::unix_ns() % 0xffff_ffff
        );
        let domain = format!("{label}-{unique}.bench.example.com");
        let api = c
            .create_api(m.req(CreateApiRequest {
                name: format!("bench-{label}"),
                protocol_type: ProtocolType::Http as i32,
                ..Default::default()
            }))
            .await?
            .into_inner();
        c.create_stage(m.req(CreateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            ..Default::default()
        }))
        .await?;
        let d = c
            .create_domain_name(m.req(CreateDomainNameRequest {
                domain_name: domain.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok(Fixture {
            api_id: api.api_id,
            domain,
            revision: d.mod_revision,
        })
    }

    /// A CreateApiMapping request for `key` on this fixture.
    pub fn mapping(&self, key: String) -> CreateApiMappingRequest {
        CreateApiMappingRequest {
            domain_name: self.domain.clone(),
            api_mapping_key: key,
            api_id: self.api_id.clone(),
            stage: "test".into(),
            ..Default::default()
        }
    }

    /// Deletes the domain (with its mappings) and the API (with its stage) from an external
    /// server; a child server's data dir is removed anyway.
    pub async fn remove(self, m: &Mapreg, ch: &Channel) -> Result<()> {
        if m.is_child() {
            return Ok(());
        }
        let mut c = RegistryClient::new(ch.clone());
        c.delete_domain_name(m.req(DeleteDomainNameRequest {
            domain_name: self.domain,
            ..Default::default()
        }))
        .await?;
        c.delete_api(m.req(DeleteApiRequest {
            api_id: self.api_id,
            ..Default::default()
        }))
        .await?;
        Ok(())
    }
}
