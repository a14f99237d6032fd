//! The baseline: a bare tonic server (`echo.proto`) that does the least work each scenario
//! needs: echo a unary request, broadcast a published payload to every subscriber, stream a
//! dump of N payloads.

use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::broadcast;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

/// Generated code of `mapreg.bench.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mapreg.bench.v1");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{Ack, DumpRequest, Payload, SubscribeRequest};

/// Payloads buffered per subscriber before it counts as lagging.
const RING: usize = 4096;

struct Service {
    ring: broadcast::Sender<Payload>,
}

type PayloadStream = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Service {
    async fn unary(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(req.into_inner()))
    }

    async fn publish(&self, req: Request<Payload>) -> Result<Response<Ack>, Status> {
        let mut p = req.into_inner();
        let published_unix_ns = super::harness::unix_ns();
        p.published_unix_ns = published_unix_ns;
        let _ = self.ring.send(p);
        Ok(Response::new(Ack { published_unix_ns }))
    }

    type SubscribeStream = PayloadStream;

    async fn subscribe(
        &self,
        _req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let stream = BroadcastStream::new(self.ring.subscribe()).map(|r| {
            r.map_err(|e| Status::data_loss(format!("subscriber lagged behind the ring: {e}")))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type DumpStream = PayloadStream;

    async fn dump(&self, req: Request<DumpRequest>) -> Result<Response<Self::DumpStream>, Status> {
        let DumpRequest { messages, bytes } = req.into_inner();
        let data = vec![b'x'; bytes as usize];
        let stream = tokio_stream::iter(0..messages).map(move |_| {
            Ok(Payload {
                data: data.clone(),
                published_unix_ns: 0,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Serves the baseline on `listen` until ctrl-c.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let (ring, _) = broadcast::channel(RING);
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(Service { ring }))
        .serve_with_shutdown(listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
