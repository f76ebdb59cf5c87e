//! BrokerSupervisor: owns one BrokerConnection per broker row and answers
//! for all of them.

use std::collections::HashMap;

use std::future::Future;

use actix::prelude::*;
use futures_util::future::join_all;

use super::connection::{
    BrokerConnection, BrokerSpec, ConnectionStatus, Disconnect, GetStatus, StopHolding,
};
use crate::broker::AdapterContext;
use crate::config::BrokersConfig;
use crate::ids::BrokerId;

/// Starts connections for these brokers where none runs yet; replies with
/// the address of each.
#[derive(Message)]
#[rtype(result = "HashMap<BrokerId, Addr<BrokerConnection>>")]
pub struct EnsureBrokers(pub Vec<BrokerSpec>);

/// Disconnects and forgets these brokers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveBrokers(pub Vec<BrokerId>);

/// The status of every connection.
#[derive(Message)]
#[rtype(result = "Vec<ConnectionStatus>")]
pub struct AllStatus;

/// Tells every connection that the gateway is stopping, so that no
/// publish waits for a broker that is down; replies once all know.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stopping;

/// Disconnects every broker; replies when all are closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Owner of every broker connection of the gateway.
pub struct BrokerSupervisor {
    settings: BrokersConfig,
    context: AdapterContext,
    connections: HashMap<BrokerId, Addr<BrokerConnection>>,
}

impl BrokerSupervisor {
    /// A supervisor with no connections yet.
    pub fn new(settings: BrokersConfig, context: AdapterContext) -> Self {
        Self {
            settings,
            context,
            connections: HashMap::new(),
        }
    }

    fn disconnect_all(
        &mut self,
        ids: Vec<BrokerId>,
        reason: &str,
    ) -> impl Future<Output = ()> + use<> {
        let closing: Vec<_> = ids
            .iter()
            .filter_map(|id| self.connections.remove(id))
            .map(|addr| {
                let reason = reason.to_owned();
                async move {
                    // A connection that already stopped is closed as well.
                    let _ = addr.send(Disconnect { reason }).await;
                }
            })
            .collect();
        async move {
            join_all(closing).await;
        }
    }
}

impl Actor for BrokerSupervisor {
    type Context = Context<Self>;
}

impl Handler<EnsureBrokers> for BrokerSupervisor {
    type Result = MessageResult<EnsureBrokers>;

    fn handle(&mut self, msg: EnsureBrokers, _ctx: &mut Self::Context) -> Self::Result {
        let mut out = HashMap::with_capacity(msg.0.len());
        for spec in msg.0 {
            let settings = self.settings.clone();
            let context = self.context.clone();
            let id = spec.id.clone();
            let addr = self
                .connections
                .entry(id.clone())
                .or_insert_with(|| BrokerConnection::new(spec, settings, &context).start())
                .clone();
            out.insert(id, addr);
        }
        MessageResult(out)
    }
}

impl Handler<RemoveBrokers> for BrokerSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: RemoveBrokers, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.disconnect_all(msg.0, "the channel's document was deleted"))
    }
}

impl Handler<AllStatus> for BrokerSupervisor {
    type Result = ResponseFuture<Vec<ConnectionStatus>>;

    fn handle(&mut self, _msg: AllStatus, _ctx: &mut Self::Context) -> Self::Result {
        let asks: Vec<_> = self
            .connections
            .values()
            .map(|addr| addr.send(GetStatus))
            .collect();
        Box::pin(async move {
            join_all(asks)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect()
        })
    }
}

impl Handler<Stopping> for BrokerSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Stopping, _ctx: &mut Self::Context) -> Self::Result {
        let told: Vec<_> = self
            .connections
            .values()
            .map(|addr| addr.send(StopHolding))
            .collect();
        Box::pin(async move {
            join_all(told).await;
        })
    }
}

impl Handler<Shutdown> for BrokerSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let ids: Vec<BrokerId> = self.connections.keys().cloned().collect();
        Box::pin(self.disconnect_all(ids, "the gateway is shutting down"))
    }
}
