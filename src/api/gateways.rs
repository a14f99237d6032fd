//! `mapreg.v1.Gateways`: gateways report what they applied, operators list them
//! (SPEC.md 8.5; the reports are kept by [`crate::fleet`]).
//!
//! Access: `ReportStatus` needs role gateway or admin (a reader only reads); `GetGateways` is a
//! read, open to every role (it shows gateway ids, principals and revisions, no records).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{paging, rpc};
use crate::audit::Principal;
use crate::auth::{Access, Caller, Role};
use crate::error::{Error, Result};
use crate::fleet::{self, Fleet};
use crate::pb::gateways_server::Gateways;
use crate::pb::{
    GetGatewaysRequest, GetGatewaysResponse, ReportStatusRequest, ReportStatusResponse,
};
use crate::store::Registry as Store;

/// Longest `gateway_id` accepted.
pub const MAX_GATEWAY_ID: usize = 256;

/// The Gateways service over a [`Fleet`], with lag computed against `store`'s revision.
#[derive(Clone)]
pub struct GatewaysService {
    fleet: Arc<Fleet>,
    store: Arc<Store>,
}

impl GatewaysService {
    /// A service recording reports in `fleet`.
    pub fn new(fleet: Arc<Fleet>, store: Arc<Store>) -> Self {
        GatewaysService { fleet, store }
    }
}

fn check_report(m: &ReportStatusRequest) -> Result<()> {
    let n = m.gateway_id.chars().count();
    if n == 0 || n > MAX_GATEWAY_ID {
        return Err(Error::invalid(
            "gateway_id",
            format!("gateway_id must be 1 to {MAX_GATEWAY_ID} characters, got {n}"),
        ));
    }
    if m.gateway_id.chars().any(char::is_control) {
        return Err(Error::invalid(
            "gateway_id",
            "gateway_id must not contain control characters",
        ));
    }
    if m.store_id.len() > MAX_GATEWAY_ID {
        return Err(Error::invalid(
            "store_id",
            format!("store_id is longer than {MAX_GATEWAY_ID} bytes"),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Gateways for GatewaysService {
    async fn report_status(
        &self,
        req: Request<ReportStatusRequest>,
    ) -> std::result::Result<Response<ReportStatusResponse>, Status> {
        let named = req.extensions().get::<Principal>().cloned();
        rpc(
            "ReportStatus",
            Access::Read,
            req,
            async |c: Caller, m: ReportStatusRequest| {
                if c.role == Role::Reader {
                    return Err(Error::PermissionDenied {
                        reason: "PERMISSION_DENIED",
                        message: format!(
                            "role reader of account {} may not call ReportStatus: only gateway \
                             and admin roles report",
                            c.account_id
                        ),
                    });
                }
                check_report(&m)?;
                let status = fleet::Status {
                    principal: crate::audit::principal(&c, named.as_ref()),
                    store_id: m.store_id,
                    applied_revision: m.applied_revision,
                    in_sync: m.in_sync,
                };
                self.fleet.report(&m.gateway_id, status);
                Ok(ReportStatusResponse {
                    revision: self.store.revision(),
                })
            },
        )
        .await
    }

    async fn get_gateways(
        &self,
        req: Request<GetGatewaysRequest>,
    ) -> std::result::Result<Response<GetGatewaysResponse>, Status> {
        rpc(
            "GetGateways",
            Access::Read,
            req,
            async |_c: Caller, m: GetGatewaysRequest| {
                let page = paging::page("gateways", "", m.max_results, &m.next_token)?;
                let revision = self.store.revision();
                let (items, next) = self.fleet.page(page.after.as_deref(), page.size, revision);
                Ok(GetGatewaysResponse {
                    items,
                    next_token: paging::encode("gateways", "", next.as_deref()),
                    revision,
                })
            },
        )
        .await
    }
}
