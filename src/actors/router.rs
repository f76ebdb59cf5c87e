//! One static route: a consumer of the source channel's subscription that
//! publishes each message on the target channel, one at a time and in
//! order, through the same publish path as clients (validation against the
//! target's schema, access rules with the route's principal, call log).

use std::collections::BTreeMap;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::connection::{BrokerConnection, Subscribe, Unsubscribe};
use super::subscription::{ConsumerAddr, Delivery, SubscriptionEnded};
use super::ws_session::next_consumer_id;
use crate::broker::TopicFilter;
use crate::publish::{PublishRequest, Publisher};
use crate::routes::Route;

/// A route as `/connections/status` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct RouteStatus {
    /// The route's name.
    pub name: String,
    /// The source channel's address and document id.
    pub from: Value,
    /// The target channel's address and document id.
    pub to: Value,
    /// `subscribing`, `active` or `stopped`.
    pub state: &'static str,
    /// Messages published on the target.
    pub forwarded: u64,
    /// Messages not forwarded, by reason (`validation`, `forbidden`,
    /// `broker_unavailable`, …); each is in the call log.
    pub failed: BTreeMap<&'static str, u64>,
    /// Why the latest message was not forwarded, or the subscription
    /// stopped.
    pub last_error: Option<String>,
    /// When the latest message was forwarded.
    pub last_forwarded_at: Option<DateTime<Utc>>,
}

/// Asks for the route's status.
#[derive(Message)]
#[rtype(result = "RouteStatus")]
pub struct GetRouteStatus;

/// One route's actor.
pub struct Router {
    route: Route,
    publisher: Publisher,
    connection: Addr<BrokerConnection>,
    filter: TopicFilter,
    consumer_id: u64,
    status: RouteStatus,
}

impl Router {
    /// The actor of `route`, taking its source through `filter` on
    /// `connection`.
    pub fn new(
        route: Route,
        publisher: Publisher,
        connection: Addr<BrokerConnection>,
        filter: TopicFilter,
    ) -> Self {
        let end = |channel: &crate::catalog::ChannelEntry| {
            serde_json::json!({
                "document_id": channel.row.document_id,
                "channel_id": channel.id,
                "address": channel.row.address,
            })
        };
        let status = RouteStatus {
            name: route.name.clone(),
            from: end(&route.from),
            to: end(&route.to),
            state: "subscribing",
            forwarded: 0,
            failed: BTreeMap::new(),
            last_error: None,
            last_forwarded_at: None,
        };
        Self {
            route,
            publisher,
            connection,
            filter,
            consumer_id: next_consumer_id(),
            status,
        }
    }

    fn failed(&mut self, kind: &'static str, error: String) {
        *self.status.failed.entry(kind).or_default() += 1;
        tracing::debug!(route = %self.route.name, kind, %error, "message not forwarded");
        self.status.last_error = Some(error);
    }

    /// The target's publish request for `delivery`; none when its address
    /// lacks a value the target needs.
    fn request(&self, delivery: &Delivery) -> Result<PublishRequest, String> {
        let captured = self
            .route
            .from
            .address
            .capture(&delivery.topic)
            .ok_or_else(|| format!("address `{}` is not the source channel's", delivery.topic))?;
        let values = self.route.target_values(&captured).ok_or_else(|| {
            format!(
                "address `{}` gives no value for the target's parameters",
                delivery.topic
            )
        })?;
        let parameters: Map<String, Value> = values
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        // The gateway's own headers (such as Kafka's `stepflow-address`)
        // describe the source, not the target.
        let headers: Map<String, Value> = delivery
            .headers
            .iter()
            .filter(|(name, _)| !name.starts_with("stepflow-"))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Ok(PublishRequest {
            channel_id: self.route.to.id.to_string(),
            message_data: (*delivery.payload).clone(),
            parameters: Some(parameters),
            message_id: None,
            headers: (!headers.is_empty()).then_some(headers),
        })
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let consumer = ConsumerAddr {
            deliveries: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            missed: None,
        };
        let subscribe = Subscribe::to_channel(
            &self.route.from,
            self.filter.clone(),
            self.consumer_id,
            consumer,
            None,
        );
        let request = self.connection.send(subscribe);
        ctx.wait(request.into_actor(self).map(|result, act, _ctx| {
            let error = match result {
                Ok(Ok(())) => {
                    act.status.state = "active";
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "the broker connection is gone".to_owned(),
            };
            // The connection keeps the subscription and makes it at the
            // broker once it connects.
            act.status.state = "active";
            act.status.last_error = Some(format!("subscribing: {error}"));
            tracing::warn!(route = %act.route.name, %error, "route subscription not confirmed");
        }));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.connection.do_send(Unsubscribe {
            filter: self.filter.clone(),
            consumer_id: self.consumer_id,
        });
    }
}

impl Handler<Delivery> for Router {
    type Result = ();

    /// Publishes one message; the next waits until this one is answered,
    /// so that order is kept.
    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        let request = match self.request(&delivery) {
            Ok(request) => request,
            Err(error) => return self.failed("parameter", error),
        };
        let publisher = self.publisher.clone();
        let principal = self.route.principal.clone();
        let publish = async move { publisher.publish(request, &principal).await };
        ctx.wait(
            publish
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(_) => {
                        act.status.forwarded += 1;
                        act.status.last_forwarded_at = Some(Utc::now());
                    }
                    Err(failure) => act.failed(failure.error.kind(), failure.error.to_string()),
                }),
        );
    }
}

impl Handler<SubscriptionEnded> for Router {
    type Result = ();

    fn handle(&mut self, ended: SubscriptionEnded, _ctx: &mut Self::Context) {
        self.status.state = "stopped";
        self.status.last_error = Some(ended.reason);
    }
}

impl Handler<GetRouteStatus> for Router {
    type Result = RouteStatus;

    fn handle(&mut self, _msg: GetRouteStatus, _ctx: &mut Self::Context) -> RouteStatus {
        self.status.clone()
    }
}
