//! Glue for `wasp:spi/sockets`: each WSP import converts its arguments,
//! calls the guest's [`Provider`](crate::net::Provider) and converts back.

use crate::WaspCtxView;
use crate::bindings::sockets::{
    Host, IoctlCommand as WitIoctl, IoctlResult, JoinResult, Overlapped, OverlappedResult, Sockopt,
    SockoptName,
};
use crate::bindings::types::{
    ErrorCode, FdEvents, JoinFlags, MessageFlags, ProtocolInfo, Qos, ShutdownHow as WitShutdown,
    SocketAddress, SocketFlags,
};
use crate::net::buffers::Buffers;
use crate::net::catalog::{self, SocketRequest};
use crate::net::overlapped::OverlappedArg;
use crate::net::{IoctlCommand, IoctlReply, JoinRole, OptName, OptValue, ShutdownHow};

use wasmtime::component::Resource;

use super::messages::GuestQueue;
use super::types::{
    fd_events, msg_flags, protocol_info, protocol_info_arg, qos_request, socket_addr, socket_flags,
    wit_addr, wit_qos,
};

type Result<T> = std::result::Result<T, ErrorCode>;

impl WaspCtxView<'_> {
    /// The overlapped argument with its queue looked up: a queue handle
    /// the guest no longer holds is WSAEINVAL (SPEC SE-6).
    fn overlapped_arg(&self, overlapped: Option<Overlapped>) -> Result<Option<OverlappedArg>> {
        let Some(arg) = overlapped else {
            return Ok(None);
        };
        let queue = match self.table.get(&arg.queue) {
            Ok(guest_queue) => guest_queue.queue().clone(),
            Err(_) => return Err(ErrorCode::Wsaeinval),
        };
        Ok(Some(OverlappedArg {
            token: arg.token,
            queue,
            msg: arg.msg,
        }))
    }
}

impl Host for WaspCtxView<'_> {
    async fn wsp_socket(
        &mut self,
        af: i32,
        socket_type: i32,
        protocol: i32,
        protocol_info: Option<ProtocolInfo>,
        g: u32,
        flags: SocketFlags,
    ) -> Result<u32> {
        let req = SocketRequest {
            af,
            socket_type,
            protocol,
            info: protocol_info.as_ref().map(protocol_info_arg),
            group: g,
            flags: socket_flags(flags),
        };
        Ok(self.ctx.provider.wsp_socket(&req)?)
    }

    async fn wsp_send(
        &mut self,
        s: u32,
        data: Vec<u8>,
        lengths: Vec<u32>,
        flags: MessageFlags,
        overlapped: Option<Overlapped>,
    ) -> Result<u32> {
        let overlapped = self.overlapped_arg(overlapped)?;
        let buffers = Buffers::new(&data, &lengths);
        let sent = self
            .ctx
            .provider
            .wsp_send(s, buffers, msg_flags(flags), overlapped);
        Ok(sent.await?)
    }

    async fn wsp_send_to(
        &mut self,
        s: u32,
        data: Vec<u8>,
        lengths: Vec<u32>,
        flags: MessageFlags,
        to: SocketAddress,
        overlapped: Option<Overlapped>,
    ) -> Result<u32> {
        let overlapped = self.overlapped_arg(overlapped)?;
        let to = socket_addr(to);
        let buffers = Buffers::new(&data, &lengths);
        let sent = self
            .ctx
            .provider
            .wsp_send_to(s, buffers, msg_flags(flags), to, overlapped);
        Ok(sent.await?)
    }

    async fn wsp_recv(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MessageFlags,
        overlapped: Option<Overlapped>,
    ) -> Result<Vec<u8>> {
        let overlapped = self.overlapped_arg(overlapped)?;
        Ok(self
            .ctx
            .provider
            .wsp_recv(s, max_len, msg_flags(flags), overlapped)
            .await?)
    }

    async fn wsp_recv_from(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MessageFlags,
        overlapped: Option<Overlapped>,
    ) -> Result<(Vec<u8>, SocketAddress)> {
        let overlapped = self.overlapped_arg(overlapped)?;
        let (data, from) = self
            .ctx
            .provider
            .wsp_recv_from(s, max_len, msg_flags(flags), overlapped)
            .await?;
        Ok((data, wit_addr(from)))
    }

    async fn wsp_bind(&mut self, s: u32, name: SocketAddress) -> Result<()> {
        Ok(self.ctx.provider.wsp_bind(s, socket_addr(name))?)
    }

    async fn wsp_listen(&mut self, s: u32, backlog: u32) -> Result<()> {
        Ok(self.ctx.provider.wsp_listen(s, backlog)?)
    }

    async fn wsp_accept(&mut self, s: u32) -> Result<(u32, SocketAddress)> {
        let (accepted, peer) = self.ctx.provider.wsp_accept(s).await?;
        Ok((accepted, wit_addr(peer)))
    }

    async fn wsp_connect(&mut self, s: u32, name: SocketAddress) -> Result<()> {
        Ok(self.ctx.provider.wsp_connect(s, socket_addr(name)).await?)
    }

    async fn wsp_shutdown(&mut self, s: u32, how: WitShutdown) -> Result<()> {
        let how = match how {
            WitShutdown::Receive => ShutdownHow::Receive,
            WitShutdown::Send => ShutdownHow::Send,
            WitShutdown::Both => ShutdownHow::Both,
        };
        Ok(self.ctx.provider.wsp_shutdown(s, how)?)
    }

    async fn wsp_close_socket(&mut self, s: u32) -> Result<()> {
        Ok(self.ctx.provider.wsp_close_socket(s).await?)
    }

    async fn wsp_ioctl(&mut self, s: u32, command: WitIoctl) -> Result<IoctlResult> {
        let command = match command {
            WitIoctl::Fionbio(on) => IoctlCommand::NonBlocking(on),
            WitIoctl::Fionread => IoctlCommand::BytesReadable,
            WitIoctl::Siocatmark => IoctlCommand::AtMark,
            WitIoctl::SioSetQos(qos) => IoctlCommand::SetQos(qos_request(&qos)),
            WitIoctl::SioGetQos => IoctlCommand::GetQos,
            WitIoctl::SioAddressListChange => IoctlCommand::AddressListChange,
            WitIoctl::SioFlush => IoctlCommand::Flush,
            WitIoctl::SioRoutingInterfaceChange(to) => {
                IoctlCommand::RoutingInterfaceChange(socket_addr(to))
            }
        };
        Ok(match self.ctx.provider.wsp_ioctl(s, command)? {
            IoctlReply::None => IoctlResult::None,
            IoctlReply::Bytes(n) => IoctlResult::Bytes(n),
            IoctlReply::Flag(on) => IoctlResult::Flag(on),
            IoctlReply::Qos(qos) => IoctlResult::Qos(wit_qos(&qos)),
        })
    }

    async fn wsp_get_sock_opt(&mut self, s: u32, name: SockoptName) -> Result<Sockopt> {
        let name = match name {
            SockoptName::Broadcast => OptName::Broadcast,
            SockoptName::OobInline => OptName::OobInline,
            SockoptName::ReuseAddress => OptName::ReuseAddress,
            SockoptName::KeepAlive => OptName::KeepAlive,
            SockoptName::TcpNoDelay => OptName::TcpNoDelay,
            SockoptName::Linger => OptName::Linger,
            SockoptName::ReceiveBuffer => OptName::ReceiveBuffer,
            SockoptName::SendBuffer => OptName::SendBuffer,
            SockoptName::MaxMessageSize => OptName::MaxMessageSize,
            SockoptName::Error => OptName::Error,
            SockoptName::SocketType => OptName::SocketType,
            SockoptName::AcceptConn => OptName::AcceptConn,
            SockoptName::ProtocolInfo => OptName::ProtocolInfo,
            SockoptName::MulticastTtl => OptName::MulticastTtl,
            SockoptName::MulticastLoop => OptName::MulticastLoop,
            SockoptName::ConnectData => OptName::ConnectData,
        };
        Ok(match self.ctx.provider.wsp_get_sock_opt(s, name)? {
            OptValue::Broadcast(v) => Sockopt::Broadcast(v),
            OptValue::OobInline(v) => Sockopt::OobInline(v),
            OptValue::ReuseAddress(v) => Sockopt::ReuseAddress(v),
            OptValue::KeepAlive(v) => Sockopt::KeepAlive(v),
            OptValue::TcpNoDelay(v) => Sockopt::TcpNoDelay(v),
            OptValue::Linger(v) => Sockopt::Linger(v),
            OptValue::ReceiveBuffer(v) => Sockopt::ReceiveBuffer(v),
            OptValue::SendBuffer(v) => Sockopt::SendBuffer(v),
            OptValue::MaxMessageSize(v) => Sockopt::MaxMessageSize(v),
            OptValue::Error(v) => Sockopt::Error(v.map(ErrorCode::from)),
            OptValue::SocketType(v) => Sockopt::SocketType(v),
            OptValue::AcceptConn(v) => Sockopt::AcceptConn(v),
            OptValue::ProtocolInfo(entry) => Sockopt::ProtocolInfo(protocol_info(entry)),
            OptValue::MulticastTtl(v) => Sockopt::MulticastTtl(v),
            OptValue::MulticastLoop(v) => Sockopt::MulticastLoop(v),
            OptValue::ConnectData(v) => Sockopt::ConnectData(v),
        })
    }

    async fn wsp_set_sock_opt(&mut self, s: u32, value: Sockopt) -> Result<()> {
        let value = match value {
            Sockopt::Broadcast(v) => OptValue::Broadcast(v),
            Sockopt::OobInline(v) => OptValue::OobInline(v),
            Sockopt::ReuseAddress(v) => OptValue::ReuseAddress(v),
            Sockopt::KeepAlive(v) => OptValue::KeepAlive(v),
            Sockopt::TcpNoDelay(v) => OptValue::TcpNoDelay(v),
            Sockopt::Linger(v) => OptValue::Linger(v),
            Sockopt::ReceiveBuffer(v) => OptValue::ReceiveBuffer(v),
            Sockopt::SendBuffer(v) => OptValue::SendBuffer(v),
            Sockopt::MulticastTtl(v) => OptValue::MulticastTtl(v),
            Sockopt::MulticastLoop(v) => OptValue::MulticastLoop(v),
            Sockopt::ConnectData(v) => OptValue::ConnectData(v),
            // Read-only options: SO_MAX_MSG_SIZE, SO_ERROR, SO_TYPE,
            // SO_ACCEPTCONN, SO_PROTOCOL_INFO.
            Sockopt::MaxMessageSize(_)
            | Sockopt::Error(_)
            | Sockopt::SocketType(_)
            | Sockopt::AcceptConn(_)
            | Sockopt::ProtocolInfo(_) => {
                return Err(self.ctx.provider.wsp_set_read_only_opt(s).into());
            }
        };
        Ok(self.ctx.provider.wsp_set_sock_opt(s, &value)?)
    }

    async fn wsp_get_sock_name(&mut self, s: u32) -> Result<SocketAddress> {
        Ok(wit_addr(self.ctx.provider.wsp_get_sock_name(s)?))
    }

    async fn wsp_get_peer_name(&mut self, s: u32) -> Result<SocketAddress> {
        Ok(wit_addr(self.ctx.provider.wsp_get_peer_name(s)?))
    }

    async fn wsp_enum_protocols(&mut self, protocols: Option<Vec<i32>>) -> Vec<ProtocolInfo> {
        catalog::enumerate(protocols.as_deref())
            .map(protocol_info)
            .collect()
    }

    async fn wsp_get_overlapped_result(
        &mut self,
        s: u32,
        token: u64,
        wait: bool,
    ) -> Result<OverlappedResult> {
        let outcome = self
            .ctx
            .provider
            .wsp_get_overlapped_result(s, token, wait)
            .await?;
        Ok(OverlappedResult {
            bytes: outcome.bytes,
            data: outcome.data,
            sender: outcome.sender.map(wit_addr),
        })
    }

    async fn wsp_async_select(
        &mut self,
        s: u32,
        queue: Resource<GuestQueue>,
        msg: u32,
        events: FdEvents,
    ) -> Result<()> {
        let queue = match self.table.get(&queue) {
            Ok(guest_queue) => guest_queue.queue().clone(),
            Err(_) => return Err(ErrorCode::Wsaeinval),
        };
        Ok(self
            .ctx
            .provider
            .wsp_async_select(s, &queue, msg, fd_events(events))?)
    }

    #[allow(clippy::too_many_arguments)] // WSPJoinLeaf's own parameters
    async fn wsp_join_leaf(
        &mut self,
        s: u32,
        name: SocketAddress,
        caller_data: Option<Vec<u8>>,
        callee_capacity: u32,
        sqos: Option<Qos>,
        _gqos: Option<Qos>,
        flags: JoinFlags,
    ) -> Result<JoinResult> {
        let role = match flags {
            JoinFlags::SenderOnly => JoinRole::SenderOnly,
            JoinFlags::ReceiverOnly => JoinRole::ReceiverOnly,
            JoinFlags::Both => JoinRole::Both,
        };
        let (socket, callee_data) = self
            .ctx
            .provider
            .wsp_join_leaf(
                s,
                socket_addr(name),
                caller_data.as_deref(),
                callee_capacity,
                sqos.as_ref().map(qos_request),
                role,
            )
            .await?;
        Ok(JoinResult {
            socket,
            callee_data,
        })
    }

    async fn last_denial(&mut self) -> Option<String> {
        self.ctx.provider.last_denial().map(|d| d.to_string())
    }
}
