//! A server restarted on the same data dir keeps every record and continues the revision sequence.

use crate::common::*;
use mapreg::pb::*;

#[tokio::test]
async fn restart_keeps_records_and_revision_sequence() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let (api, m) = api_domain_and_mapping(&mut c).await;
    assert_eq!(m.create_revision, 4);
    let store_before = server.data_dir.clone();
    drop(c);

    let server = server.restart().await;
    assert_eq!(server.data_dir, store_before);
    let mut c = server.client().await;
    let got = get_mapping(&mut c, "api.example.com", &m.api_mapping_id)
        .await
        .expect("mapping survives restart");
    assert_eq!(got, m);
    let api_again = c
        .get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("api survives")
        .into_inner();
    assert_eq!(api_again, api);
    let next = create_api(&mut c, "second", ProtocolType::Rest).await;
    assert_eq!(next.create_revision, 5, "revisions continue after restart");
    drop(c);
    server.stop().await;
}
