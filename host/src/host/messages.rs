//! Glue for `wasp:spi/messages` and `wasp:spi/readiness`: the guest's
//! message-queue resource and its pollable. Decides nothing: the queue itself is `net::queue`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::WaspCtxView;
use crate::bindings::messages::{
    Completion as WitCompletion, Host, HostMessageQueue, Message as WitMessage,
};
use crate::bindings::readiness;
use crate::bindings::types::ErrorCode;
use crate::net::queue::{Message, MessageQueue};

use super::types::wit_fd_events;

/// Most queue pollables one guest may hold at once; one more stops it (a
/// guest leaking pollables would grow the host's resource table).
pub const MAX_QUEUE_POLLABLES: u32 = 4096;

/// The resource behind a guest's `message-queue` handle.
pub struct GuestQueue(Arc<MessageQueue>);

impl GuestQueue {
    /// The shared queue.
    pub fn queue(&self) -> &Arc<MessageQueue> {
        &self.0
    }
}

/// What a queue's pollable waits on: its own table entry sharing the
/// queue, so that the guest may drop the queue and its pollables in any
/// order (the pollable owns this entry, not the guest's queue handle).
struct QueueWatch {
    queue: Arc<MessageQueue>,
    /// The guest's count of live queue pollables, decremented on drop.
    live: Arc<AtomicU32>,
}

impl Drop for QueueWatch {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QueueWatch {
    async fn ready(&mut self) {
        self.queue.ready().await;
    }
}

fn wit_message(m: Message) -> WitMessage {
    WitMessage {
        msg: m.msg,
        socket: m.socket,
        event: wit_fd_events(m.notice.event),
        error: m.notice.error.map(ErrorCode::from),
        lparam: m.notice.lparam(),
        completion: m.completion.map(|c| WitCompletion {
            token: c.token,
            bytes: c.bytes,
        }),
    }
}

fn queue(
    view: &mut WaspCtxView<'_>,
    handle: &Resource<GuestQueue>,
) -> wasmtime::Result<Arc<MessageQueue>> {
    Ok(view.table.get(handle)?.0.clone())
}

impl Host for WaspCtxView<'_> {}

impl HostMessageQueue for WaspCtxView<'_> {
    async fn new(&mut self, capacity: u32) -> wasmtime::Result<Resource<GuestQueue>> {
        let queue = self.ctx.open_queue(capacity)?;
        Ok(self.table.push(GuestQueue(queue))?)
    }

    async fn get(
        &mut self,
        handle: Resource<GuestQueue>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<WitMessage>> {
        let queue = queue(self, &handle)?;
        let timeout = timeout_ms.map(Duration::from_millis);
        Ok(queue.get(timeout).await.map(wit_message))
    }

    fn peek(&mut self, handle: Resource<GuestQueue>) -> wasmtime::Result<Option<WitMessage>> {
        Ok(queue(self, &handle)?.peek().map(wit_message))
    }

    fn drain(
        &mut self,
        handle: Resource<GuestQueue>,
        max: u32,
    ) -> wasmtime::Result<Vec<WitMessage>> {
        let queue = queue(self, &handle)?;
        Ok(queue
            .drain(max as usize)
            .into_iter()
            .map(wit_message)
            .collect())
    }

    fn len(&mut self, handle: Resource<GuestQueue>) -> wasmtime::Result<u32> {
        Ok(queue(self, &handle)?.len() as u32)
    }

    fn overflows(&mut self, handle: Resource<GuestQueue>) -> wasmtime::Result<u64> {
        Ok(queue(self, &handle)?.overflows())
    }

    async fn close(&mut self, handle: Resource<GuestQueue>) -> wasmtime::Result<()> {
        queue(self, &handle)?.close();
        Ok(())
    }

    async fn drop(&mut self, handle: Resource<GuestQueue>) -> wasmtime::Result<()> {
        let queue = self.table.delete(handle)?;
        queue.0.close();
        self.ctx.close_queue();
        Ok(())
    }
}

impl readiness::Host for WaspCtxView<'_> {
    async fn subscribe(
        &mut self,
        handle: Resource<GuestQueue>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let shared = queue(self, &handle)?;
        let live = self.ctx.pollables.clone();
        if live.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUE_POLLABLES {
            live.fetch_sub(1, Ordering::Relaxed);
            wasmtime::bail!("the guest holds more than {MAX_QUEUE_POLLABLES} queue pollables");
        }
        let watch = self.table.push(QueueWatch {
            queue: shared,
            live,
        })?;
        subscribe(self.table, watch)
    }
}
