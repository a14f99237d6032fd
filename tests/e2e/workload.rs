//! A random write workload for the heavy tests: a writer picks an operation on what its
//! account's [`Pool`] believes exists ([`choose`]), sends it ([`perform`], whose success is an
//! [`Ack`] for the history checker), and updates the pool from the outcome ([`learn`]).
//!
//! Operations create, update and delete APIs, stages, domain names and API mappings of one
//! account (the caller's), on a small fixed set of names so that they collide: refusals
//! (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ...) are part of the workload, not errors.
//! [`choose`] is deterministic for a given RNG state and pool, so a seeded `StdRng` replays the
//! same choices as long as the server answers the same way.

use std::sync::Mutex;

use mapreg::pb::*;
use rand::Rng;
use rand::rngs::StdRng;
use tonic::{Code, Status};

use crate::common::*;
use crate::history::*;

/// Stage names writers create (`$default` included), few so that creates collide.
const STAGE_NAMES: [&str; 4] = ["test", "prod", "v1", "$default"];
/// Mapping keys writers use: the root, single- and multi-level keys.
const KEYS: [&str; 6] = ["", "orders", "orders/v1", "v2", "shop/cart", "pets"];

/// What the writers of one account know exists (may be stale: failures are fine). [`choose`]
/// only reads it; [`learn`] adds what a write created and forgets what a write deleted or a
/// NOT_FOUND showed missing.
#[derive(Default)]
pub struct Pool {
    /// Goes into this pool's domain names: `d0..d6.<suffix>.example.com`, `*.<suffix>.example.com`.
    /// Distinct suffixes keep pools (accounts) off each other's domain names.
    pub suffix: String,
    /// Once this many APIs are known, the API-creating roll deletes one instead.
    pub cap: usize,
    /// Known API ids.
    pub apis: Vec<String>,
    /// Known stages: (API id, stage name).
    pub stages: Vec<(String, String)>,
    /// Known mappings: (domain name, mapping id).
    pub mappings: Vec<(String, String)>,
}

impl Pool {
    /// An empty pool, behind the mutex the writers of one account share.
    pub fn new(suffix: &str, cap: usize) -> Mutex<Pool> {
        Mutex::new(Pool {
            suffix: suffix.into(),
            cap,
            ..Pool::default()
        })
    }

    /// The 8 domain names of this pool (7 exact, 1 wildcard), whether they exist or not.
    fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = (0..7)
            .map(|k| format!("d{k}.{}.example.com", self.suffix))
            .collect();
        d.push(format!("*.{}.example.com", self.suffix));
        d
    }

    fn forget_api(&mut self, id: &str) {
        self.apis.retain(|a| a != id);
        self.stages.retain(|(a, _)| a != id);
    }

    fn forget_stage(&mut self, api: &str, stage: &str) {
        self.stages.retain(|(a, s)| !(a == api && s == stage));
    }

    fn forget_domain(&mut self, d: &str) {
        self.mappings.retain(|(dd, _)| dd != d);
    }

    fn forget_mapping(&mut self, d: &str, id: &str) {
        self.mappings.retain(|(dd, i)| !(dd == d && i == id));
    }
}

/// A random element of `v`, None when empty.
fn pick<T: Clone>(rng: &mut StdRng, v: &[T]) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[rng.gen_range(0..v.len())].clone())
    }
}

/// One write of the workload; deletes carry the resource's identity only (they are sent
/// unconditionally, `expected_revision` 0).
#[derive(Debug, Clone)]
pub enum Op {
    /// CreateApi.
    CreateApi(CreateApiRequest),
    /// UpdateApi.
    UpdateApi(UpdateApiRequest),
    /// DeleteApi of this API id.
    DeleteApi(String),
    /// CreateStage.
    CreateStage(CreateStageRequest),
    /// UpdateStage.
    UpdateStage(UpdateStageRequest),
    /// DeleteStage of (API id, stage name).
    DeleteStage(String, String),
    /// CreateDomainName.
    CreateDomain(CreateDomainNameRequest),
    /// UpdateDomainName.
    UpdateDomain(UpdateDomainNameRequest),
    /// DeleteDomainName of this domain name.
    DeleteDomain(String),
    /// CreateApiMapping.
    CreateMapping(CreateApiMappingRequest),
    /// UpdateApiMapping.
    UpdateMapping(UpdateApiMappingRequest),
    /// DeleteApiMapping of (domain name, mapping id).
    DeleteMapping(String, String),
}

/// Configurations for a create: none (the server's default) most often, else one REGIONAL
/// with a certificate ARN naming `tag`, or one EDGE.
fn domain_config(rng: &mut StdRng, tag: &str) -> Vec<DomainNameConfiguration> {
    match rng.gen_range(0..10) {
        0..=5 => Vec::new(),
        6..=8 => vec![DomainNameConfiguration {
            endpoint_type: EndpointType::Regional as i32,
            security_policy: SecurityPolicy::Tls12 as i32,
            certificate_arn: format!("arn:aws:acm:eu-west-1:111122223333:certificate/{tag}"),
            ..Default::default()
        }],
        _ => vec![DomainNameConfiguration {
            endpoint_type: EndpointType::Edge as i32,
            security_policy: SecurityPolicy::Tls12 as i32,
            ..Default::default()
        }],
    }
}

/// Picks the next operation of a writer from `pool` (`tag`, unique per operation, goes into
/// names and descriptions). Always returns an operation: when the rolled one needs a record the
/// pool does not know, it falls back to a create (of an API, a stage or a domain name).
pub fn choose(rng: &mut StdRng, pool: &Pool, tag: &str) -> Op {
    let create_api = |rng: &mut StdRng| {
        let protocol = match rng.gen_range(0..10) {
            0 => ProtocolType::Websocket,
            1..=3 => ProtocolType::Rest,
            _ => ProtocolType::Http,
        };
        Op::CreateApi(crate::common::api_req(&format!("api-{tag}"), protocol))
    };
    let domains = pool.domains();
    let roll = rng.gen_range(0..100);
    match roll {
        0..=9 => {
            if pool.apis.len() >= pool.cap
                && let Some(a) = pick(rng, &pool.apis)
            {
                Op::DeleteApi(a)
            } else {
                create_api(rng)
            }
        }
        10..=15 => match pick(rng, &pool.apis) {
            Some(a) => Op::UpdateApi(UpdateApiRequest {
                api_id: a,
                name: Some(format!("renamed-{tag}")),
                description: rng.gen_bool(0.5).then(|| format!("d-{tag}")),
                expected_revision: 0,
                ..Default::default()
            }),
            None => create_api(rng),
        },
        16..=20 => match pick(rng, &pool.apis) {
            Some(a) => Op::DeleteApi(a),
            None => create_api(rng),
        },
        21..=32 => match pick(rng, &pool.apis) {
            Some(a) => Op::CreateStage(CreateStageRequest {
                api_id: a,
                stage_name: pick(rng, &STAGE_NAMES).expect("names").into(),
                ..Default::default()
            }),
            None => create_api(rng),
        },
        33..=37 => match pick(rng, &pool.stages) {
            Some((a, s)) => Op::UpdateStage(UpdateStageRequest {
                api_id: a,
                stage_name: s,
                description: Some(format!("stage-{tag}")),
                expected_revision: 0,
                ..Default::default()
            }),
            None => create_api(rng),
        },
        38..=41 => match pick(rng, &pool.stages) {
            Some((a, s)) => Op::DeleteStage(a, s),
            None => create_api(rng),
        },
        42..=51 => Op::CreateDomain(CreateDomainNameRequest {
            domain_name: pick(rng, &domains).expect("domains"),
            domain_name_configurations: domain_config(rng, tag),
            ..Default::default()
        }),
        52..=54 => Op::UpdateDomain(UpdateDomainNameRequest {
            domain_name: pick(rng, &domains).expect("domains"),
            domain_name_configurations: {
                let mut c = domain_config(rng, tag);
                if c.is_empty() {
                    c.push(DomainNameConfiguration {
                        endpoint_type: EndpointType::Regional as i32,
                        security_policy: SecurityPolicy::Tls12 as i32,
                        certificate_arn: format!("arn:update:{tag}"),
                        ..Default::default()
                    });
                }
                c
            },
            expected_revision: 0,
            ..Default::default()
        }),
        55..=58 => Op::DeleteDomain(pick(rng, &domains).expect("domains")),
        59..=80 => match pick(rng, &pool.stages) {
            Some((a, s)) => Op::CreateMapping(CreateApiMappingRequest {
                domain_name: pick(rng, &domains).expect("domains"),
                api_mapping_key: pick(rng, &KEYS).expect("keys").into(),
                api_id: a,
                stage: s,
                ..Default::default()
            }),
            None => match pick(rng, &pool.apis) {
                Some(a) => Op::CreateStage(CreateStageRequest {
                    api_id: a,
                    stage_name: "test".into(),
                    ..Default::default()
                }),
                None => create_api(rng),
            },
        },
        81..=89 => match pick(rng, &pool.mappings) {
            Some((d, id)) => {
                let stage = if rng.gen_bool(0.3) {
                    pick(rng, &pool.stages)
                } else {
                    None
                };
                Op::UpdateMapping(UpdateApiMappingRequest {
                    domain_name: d,
                    api_mapping_id: id,
                    api_mapping_key: Some(pick(rng, &KEYS).expect("keys").into()),
                    api_id: stage.as_ref().map(|(a, _)| a.clone()),
                    stage: stage.map(|(_, s)| s),
                    expected_revision: 0,
                    ..Default::default()
                })
            }
            None => Op::CreateDomain(CreateDomainNameRequest {
                domain_name: pick(rng, &domains).expect("domains"),
                ..Default::default()
            }),
        },
        _ => match pick(rng, &pool.mappings) {
            Some((d, id)) => Op::DeleteMapping(d, id),
            None => create_api(rng),
        },
    }
}

/// Sends an operation; a success is the acknowledgement: the revision the write took and the
/// resource it answered with (or, for a delete, the identity deleted). A failure is the status
/// as received.
pub async fn perform(c: &mut Client, op: &Op) -> Result<Ack, Status> {
    Ok(match op.clone() {
        Op::CreateApi(r) => {
            let a = c.create_api(r).await?.into_inner();
            Ack {
                revision: a.mod_revision,
                kind: AckKind::Put(api_resource(a)),
            }
        }
        Op::UpdateApi(r) => {
            let a = c.update_api(r).await?.into_inner();
            Ack {
                revision: a.mod_revision,
                kind: AckKind::Put(api_resource(a)),
            }
        }
        Op::DeleteApi(id) => {
            let d = c
                .delete_api(DeleteApiRequest {
                    api_id: id.clone(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ack {
                revision: d.revision,
                kind: AckKind::Delete(ResourceId::Api(id)),
            }
        }
        Op::CreateStage(r) => {
            let s = c.create_stage(r).await?.into_inner();
            Ack {
                revision: s.mod_revision,
                kind: AckKind::Put(stage_resource(s)),
            }
        }
        Op::UpdateStage(r) => {
            let s = c.update_stage(r).await?.into_inner();
            Ack {
                revision: s.mod_revision,
                kind: AckKind::Put(stage_resource(s)),
            }
        }
        Op::DeleteStage(a, s) => {
            let d = c
                .delete_stage(DeleteStageRequest {
                    api_id: a.clone(),
                    stage_name: s.clone(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ack {
                revision: d.revision,
                kind: AckKind::Delete(ResourceId::Stage(a, s)),
            }
        }
        Op::CreateDomain(r) => {
            let d = c.create_domain_name(r).await?.into_inner();
            Ack {
                revision: d.mod_revision,
                kind: AckKind::Put(domain_resource(d)),
            }
        }
        Op::UpdateDomain(r) => {
            let d = c.update_domain_name(r).await?.into_inner();
            Ack {
                revision: d.mod_revision,
                kind: AckKind::Put(domain_resource(d)),
            }
        }
        Op::DeleteDomain(name) => {
            let d = c
                .delete_domain_name(DeleteDomainNameRequest {
                    domain_name: name.clone(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ack {
                revision: d.revision,
                kind: AckKind::Delete(ResourceId::DomainName(name)),
            }
        }
        Op::CreateMapping(r) => {
            let m = c.create_api_mapping(r).await?.into_inner();
            Ack {
                revision: m.mod_revision,
                kind: AckKind::Put(mapping_resource(m)),
            }
        }
        Op::UpdateMapping(r) => {
            let m = c.update_api_mapping(r).await?.into_inner();
            Ack {
                revision: m.mod_revision,
                kind: AckKind::Put(mapping_resource(m)),
            }
        }
        Op::DeleteMapping(d, id) => {
            let r = c
                .delete_api_mapping(DeleteApiMappingRequest {
                    domain_name: d.clone(),
                    api_mapping_id: id.clone(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ack {
                revision: r.revision,
                kind: AckKind::Delete(ResourceId::ApiMapping(d, id)),
            }
        }
    })
}

/// Keeps the pool roughly in line with what happened: records the API, stage or mapping a
/// create answered, forgets what a delete removed (with what the delete cascaded to) or a
/// NOT_FOUND showed gone; other outcomes change nothing.
pub fn learn(pool: &mut Pool, op: &Op, result: &Result<Ack, Status>) {
    match result {
        Ok(ack) => match (op, &ack.kind) {
            (Op::CreateApi(_), AckKind::Put(r)) => {
                if let ResourceId::Api(id) = ResourceId::of(r) {
                    pool.apis.push(id);
                }
            }
            (Op::CreateStage(_), AckKind::Put(r)) => {
                if let ResourceId::Stage(a, s) = ResourceId::of(r) {
                    pool.stages.push((a, s));
                }
            }
            (Op::CreateMapping(_), AckKind::Put(r)) => {
                if let ResourceId::ApiMapping(d, id) = ResourceId::of(r) {
                    pool.mappings.push((d, id));
                }
            }
            (Op::DeleteApi(id), _) => pool.forget_api(id),
            (Op::DeleteStage(a, s), _) => pool.forget_stage(a, s),
            (Op::DeleteDomain(d), _) => pool.forget_domain(d),
            (Op::DeleteMapping(d, id), _) => pool.forget_mapping(d, id),
            _ => {}
        },
        Err(st) if st.code() == Code::NotFound => match (op, reason(st).as_str()) {
            (Op::UpdateApi(r), "API_NOT_FOUND") => pool.forget_api(&r.api_id),
            (Op::DeleteApi(id), "API_NOT_FOUND") => pool.forget_api(id),
            (Op::CreateStage(r), "API_NOT_FOUND") => pool.forget_api(&r.api_id),
            (Op::UpdateStage(r), _) => pool.forget_stage(&r.api_id, &r.stage_name),
            (Op::DeleteStage(a, s), _) => pool.forget_stage(a, s),
            (Op::CreateMapping(r), "API_NOT_FOUND") => pool.forget_api(&r.api_id),
            (Op::CreateMapping(r), "STAGE_NOT_FOUND") => pool.forget_stage(&r.api_id, &r.stage),
            (Op::UpdateMapping(r), "API_MAPPING_NOT_FOUND" | "DOMAIN_NAME_NOT_FOUND") => {
                pool.forget_mapping(&r.domain_name, &r.api_mapping_id)
            }
            (Op::DeleteMapping(d, id), _) => pool.forget_mapping(d, id),
            (Op::DeleteDomain(d), _) => pool.forget_domain(d),
            _ => {}
        },
        Err(_) => {}
    }
}
