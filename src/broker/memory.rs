//! The embedded in-memory broker: the zero-setup default for documents with
//! no reachable servers. It serves one gateway process only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;

use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};

/// The shared topic space of one gateway's in-memory brokers.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<BusInner>,
}

#[derive(Default)]
struct BusInner {
    next_client: AtomicU64,
    /// Per client: its event sender and its filters.
    clients: RwLock<HashMap<u64, Client>>,
}

struct Client {
    events_tx: EventsTx,
    filters: Vec<TopicFilter>,
}

impl MemoryBus {
    fn join(&self, events_tx: EventsTx) -> u64 {
        let id = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let client = Client {
            events_tx,
            filters: Vec::new(),
        };
        self.clients_mut().insert(id, client);
        id
    }

    fn leave(&self, id: u64) {
        self.clients_mut().remove(&id);
    }

    fn set_filter(&self, id: u64, filter: &TopicFilter, on: bool) {
        let mut clients = self.clients_mut();
        let Some(client) = clients.get_mut(&id) else {
            return;
        };
        client.filters.retain(|f| f != filter);
        if on {
            client.filters.push(filter.clone());
        }
    }

    /// Hands `message` to every client with a matching filter, waiting
    /// while a receiver's queue is full.
    async fn deliver(&self, message: Outbound) {
        let receivers: Vec<EventsTx> = {
            let clients = self.inner.clients.read().unwrap_or_else(|p| p.into_inner());
            clients
                .values()
                .filter(|c| c.filters.iter().any(|f| f.matches(&message.topic)))
                .map(|c| c.events_tx.clone())
                .collect()
        };
        let inbound = Inbound {
            topic: message.topic.into(),
            payload: message.payload,
            headers: message.headers,
            via: None,
            settle: None,
        };
        for events_tx in receivers {
            // A receiver that has gone away has nothing left to deliver to.
            let _ = events_tx.send(AdapterEvent::Message(inbound.clone())).await;
        }
    }

    fn clients_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Client>> {
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection to the in-memory broker.
pub struct MemoryAdapter {
    bus: MemoryBus,
    client: Mutex<Option<u64>>,
}

impl MemoryAdapter {
    /// An adapter on `bus`, not yet connected.
    pub fn new(bus: MemoryBus) -> Self {
        Self {
            bus,
            client: Mutex::new(None),
        }
    }

    fn client_id(&self) -> Result<u64, BrokerError> {
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        client.ok_or_else(|| BrokerError::Unavailable("not connected".into()))
    }
}

#[async_trait]
impl ProtocolAdapter for MemoryAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        let id = self.bus.join(events_tx);
        let previous = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(id);
        if let Some(previous) = previous {
            self.bus.leave(previous);
        }
        Ok(())
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        self.client_id()?;
        self.bus.deliver(message).await;
        Ok(())
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        _options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        self.bus.set_filter(self.client_id()?, filter, true);
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        self.bus.set_filter(self.client_id()?, filter, false);
        Ok(())
    }

    async fn disconnect(&self) {
        if let Some(id) = self.client.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.bus.leave(id);
        }
    }
}
