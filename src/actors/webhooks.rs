//! Webhooks: owns one WebhookSession per stored webhook subscription,
//! starts them from the database at start, and answers the management API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use entity::webhook_subscriptions;
use futures_util::future::join_all;
use sea_orm::DatabaseConnection;

use super::webhook_session::{
    Access, AwaitSubscribed, GetView, Resume, SessionEnded, Stop, WebhookParts, WebhookSession,
    WebhookView,
};
use super::CallLog;
use crate::auth::{Auth, Principal};
use crate::catalog::SharedCatalog;
use crate::config::WebhooksConfig;
use crate::http::subscription::Target;
use crate::ids::DocumentId;
use crate::webhook::refused_literal;

/// Starts the session of a subscription just stored.
#[derive(Message)]
#[rtype(result = "WebhookView")]
pub struct StartWebhook {
    /// The stored row.
    pub row: webhook_subscriptions::Model,
    /// Its channel, broker connection and filter.
    pub target: Target,
}

/// Starts the sessions of stored subscriptions; answers how many run.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RestoreWebhooks(pub Vec<webhook_subscriptions::Model>);

/// Stops and forgets a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveWebhook(pub String);

/// Stops and forgets the subscriptions of a deleted document's channels.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveDocumentWebhooks(pub String);

/// Resumes a paused subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeWebhook(pub String);

/// Lists subscriptions, optionally of one channel.
#[derive(Message)]
#[rtype(result = "Vec<WebhookView>")]
pub struct ListWebhooks {
    /// Only this channel's, when given.
    pub channel_id: Option<String>,
}

/// A running session and what it is a subscription of.
struct Running {
    document: String,
    channel: String,
    session: Addr<WebhookSession>,
}

/// The owner of every webhook session.
pub struct Webhooks {
    catalog: SharedCatalog,
    settings: Arc<WebhooksConfig>,
    call_log: CallLog,
    db: DatabaseConnection,
    /// Checks each delivery against the rules in force.
    auth: Arc<Auth>,
    /// Running sessions by subscription id.
    sessions: HashMap<String, Running>,
    /// Stored subscriptions whose channel is not loaded, by id.
    unavailable: HashMap<String, WebhookView>,
}

impl Webhooks {
    /// An owner with no sessions yet.
    pub fn new(
        catalog: SharedCatalog,
        settings: WebhooksConfig,
        call_log: CallLog,
        db: DatabaseConnection,
        auth: Arc<Auth>,
    ) -> Self {
        Self {
            catalog,
            auth,
            settings: Arc::new(settings),
            call_log,
            db,
            sessions: HashMap::new(),
            unavailable: HashMap::new(),
        }
    }

    fn launch(
        &mut self,
        row: webhook_subscriptions::Model,
        target: Target,
        ctx: &mut Context<Self>,
    ) -> Addr<WebhookSession> {
        let document_id = DocumentId::from(row.document_id.clone());
        let document = self
            .catalog
            .load()
            .document(&document_id)
            .map(|d| d.row.name.clone());
        let access = Access {
            auth: self.auth.clone(),
            owner: row
                .owner
                .as_deref()
                .map(|name| Principal::from_stored(name, row.owner_principal.as_ref())),
            document: document.unwrap_or_default(),
        };
        let parts = WebhookParts {
            access,
            fixed: fixed_parameters(&row),
            channel: target.channel,
            filter: target.filter,
            connection: target.connection,
            settings: self.settings.clone(),
            call_log: self.call_log.clone(),
            db: self.db.clone(),
            row,
        };
        let id = parts.row.id.clone();
        let (document, channel) = (parts.row.document_id.clone(), parts.row.channel_id.clone());
        let session = WebhookSession::start(parts, ctx.address().recipient());
        let running = Running {
            document,
            channel,
            session: session.clone(),
        };
        self.sessions.insert(id, running);
        session
    }
}

/// The parameter values stored with a subscription.
pub fn fixed_parameters(row: &webhook_subscriptions::Model) -> BTreeMap<String, String> {
    row.parameters
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

impl Actor for Webhooks {
    type Context = Context<Self>;
}

impl Handler<StartWebhook> for Webhooks {
    type Result = ResponseFuture<WebhookView>;

    fn handle(&mut self, msg: StartWebhook, ctx: &mut Self::Context) -> Self::Result {
        let fallback = WebhookView::stored(&msg.row, "active");
        let session = self.launch(msg.row, msg.target, ctx);
        Box::pin(async move {
            // Failing to answer means the session has stopped; the view
            // then says what is stored.
            let _ = session.send(AwaitSubscribed).await;
            session.send(GetView).await.unwrap_or(fallback)
        })
    }
}

impl Handler<RestoreWebhooks> for Webhooks {
    type Result = usize;

    fn handle(&mut self, msg: RestoreWebhooks, ctx: &mut Self::Context) -> usize {
        let catalog = self.catalog.load();
        let allow_private = self.settings.allow_private_targets;
        for row in msg.0 {
            let fixed = fixed_parameters(&row);
            let target = match refused_literal(&row.callback_url, allow_private) {
                Some(reason) => Err(reason),
                None => Target::resolve(&catalog, row.channel_id.clone(), &fixed)
                    .map_err(|error| error.to_string()),
            };
            match target {
                Ok(target) => {
                    self.launch(row, target, ctx);
                }
                Err(reason) => {
                    tracing::warn!(webhook = %row.id, %reason, "webhook subscription not started");
                    let mut view = WebhookView::stored(&row, "unavailable");
                    view.reason = Some(reason);
                    self.unavailable.insert(row.id, view);
                }
            }
        }
        self.sessions.len()
    }
}

impl Handler<RemoveWebhook> for Webhooks {
    type Result = ();

    fn handle(&mut self, msg: RemoveWebhook, _ctx: &mut Self::Context) {
        self.unavailable.remove(&msg.0);
        if let Some(running) = self.sessions.remove(&msg.0) {
            running.session.do_send(Stop);
        }
    }
}

impl Handler<RemoveDocumentWebhooks> for Webhooks {
    type Result = ();

    fn handle(&mut self, msg: RemoveDocumentWebhooks, _ctx: &mut Self::Context) {
        self.unavailable.retain(|_, view| view.document_id != msg.0);
        self.sessions.retain(|_, running| {
            let keep = running.document != msg.0;
            if !keep {
                running.session.do_send(Stop);
            }
            keep
        });
    }
}

impl Handler<ResumeWebhook> for Webhooks {
    type Result = ();

    fn handle(&mut self, msg: ResumeWebhook, _ctx: &mut Self::Context) {
        if let Some(running) = self.sessions.get(&msg.0) {
            running.session.do_send(Resume);
        }
    }
}

impl Handler<ListWebhooks> for Webhooks {
    type Result = ResponseFuture<Vec<WebhookView>>;

    fn handle(&mut self, msg: ListWebhooks, _ctx: &mut Self::Context) -> Self::Result {
        let wanted = |channel: &str| msg.channel_id.as_deref().is_none_or(|c| c == channel);
        let sessions: Vec<Addr<WebhookSession>> = self
            .sessions
            .values()
            .filter(|running| wanted(&running.channel))
            .map(|running| running.session.clone())
            .collect();
        let mut unavailable: Vec<WebhookView> = self
            .unavailable
            .values()
            .filter(|view| wanted(&view.channel_id))
            .cloned()
            .collect();
        Box::pin(async move {
            let views = join_all(sessions.iter().map(|s| s.send(GetView))).await;
            let mut views: Vec<WebhookView> = views.into_iter().flatten().collect();
            views.append(&mut unavailable);
            views.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            views
        })
    }
}

impl Handler<SessionEnded> for Webhooks {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _ctx: &mut Self::Context) {
        self.sessions.remove(&msg.id);
    }
}
