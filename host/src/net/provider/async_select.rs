//! WSPAsyncSelect (SPEC AS-1..AS-7).

use super::*;

impl Provider {
    /// WSPAsyncSelect (SPEC AS-1..AS-7): registers `events` with message
    /// id `msg` on `queue`, makes the socket non-blocking, and starts (or
    /// stops, for an empty mask) watching the socket in the guest's reactor.
    pub fn wsp_async_select(
        &mut self,
        s: u32,
        queue: &Arc<MessageQueue>,
        msg: u32,
        events: FdEvents,
    ) -> Result<(), WsaError> {
        self.socket(s)?;
        // A closed queue, or another guest's (SPEC AS-3).
        if queue.is_closed() || !queue.attach(&self.reactor) {
            return Err(WsaError::Inval);
        }
        let sock = self.socket(s)?;
        sock.nonblocking = true;
        sock.refresh_connect();
        if sock.entry.kind == SocketKind::Datagram {
            // SPEC AS-15: a send is possible on registration, bound or not
            // (send-to binds an unbound socket implicitly).
            sock.link.feed(Input::DatagramBound);
        }
        sock.link.register(queue, msg, events);
        if let Err(err) = sock.restart_watcher() {
            sock.link.register(queue, msg, FdEvents::empty());
            return Err(err);
        }
        Ok(())
    }
}
