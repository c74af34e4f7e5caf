use crate::transport::{
    ReceivedMessage, TpHandle, Transport, TransportState,
    parse::{CompleteItem, parse_complete},
};
use crate::{Endpoint, Result};
use std::sync::Arc;
use std::time::SystemTime;
use std::{io, net::SocketAddr};
use tokio::{
    net::UdpSocket,
    sync::{broadcast, watch},
};

const MAX_MSG_SIZE: usize = u16::MAX as usize;

#[derive(Clone, Debug)]
pub(super) struct UdpTransport {
    socket: Arc<UdpSocket>,
    pub(super) bound: SocketAddr,
    state: Arc<watch::Sender<TransportState>>,
}

impl UdpTransport {
    pub(super) async fn bind(
        endpoint: broadcast::Receiver<Endpoint>,
        addr: SocketAddr,
    ) -> io::Result<UdpTransport> {
        // PATCH(milliwatt): binding and serving are separate (`from_socket`).
        Self::from_socket(endpoint, UdpSocket::bind(addr).await?)
    }

    // PATCH(milliwatt): serve on a socket bound elsewhere.
    pub(super) fn from_socket(
        endpoint: broadcast::Receiver<Endpoint>,
        socket: UdpSocket,
    ) -> io::Result<UdpTransport> {
        let socket = Arc::new(socket);
        let bound = socket.local_addr()?;
        // PATCH(milliwatt): each datagram's kernel receive time (see `recv_stamped`)
        enable_receive_timestamps(&socket);

        log::info!("Bound UDP to {bound}");

        let (state_tx, _) = watch::channel(TransportState::Ok);

        let transport = UdpTransport {
            socket,
            bound,
            state: Arc::new(state_tx),
        };

        tokio::spawn(receive_task(endpoint, transport.clone()));

        Ok(transport)
    }

    pub(super) async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<()> {
        self.socket.send_to(buf, addr).await?;
        Ok(())
    }

    pub(super) fn state_receiver(&self) -> watch::Receiver<TransportState> {
        self.state.subscribe()
    }
}

async fn receive_task(mut endpoint: broadcast::Receiver<Endpoint>, transport: UdpTransport) {
    let endpoint = match endpoint.recv().await.ok() {
        Some(endpoint) => endpoint,
        None => return,
    };

    let mut buffer = vec![0u8; MAX_MSG_SIZE];

    loop {
        // PATCH(milliwatt): with the kernel's receive time
        let result = recv_stamped(&transport.socket, &mut buffer).await;

        if let Err(e) = handle_msg(&endpoint, &transport, result, &buffer).await {
            log::error!("UDP recv error {e:?}");
        }
    }
}

async fn handle_msg(
    endpoint: &Endpoint,
    transport: &UdpTransport,
    result: io::Result<(usize, SocketAddr, Option<SystemTime>)>,
    bytes: &[u8],
) -> Result<()> {
    let (len, remote, received_at) = result?;

    let bytes = &bytes[..len];

    // PATCH(milliwatt): the application's look before the parse (see `DatagramScreen`)
    if let Some(screen) = endpoint.datagram_screen() {
        let received = received_at.unwrap_or_else(SystemTime::now);
        match screen.screen(endpoint, bytes, remote, received) {
            crate::Screened::Parse => {}
            crate::Screened::Drop => return Ok(()),
            crate::Screened::Answer(answer) => {
                if let Err(e) = transport.socket.send_to(&answer, remote).await {
                    log::warn!("sending the screen's answer to {remote} failed: {e}");
                }
                return Ok(());
            }
        }
    }

    match parse_complete(bytes) {
        Ok(CompleteItem::KeepAliveRequest) => {
            transport.socket.send_to(b"\r\n", remote).await?;
        }
        Ok(CompleteItem::KeepAliveResponse) => {
            // ignore for now
        }
        Ok(CompleteItem::Refused(refused)) => {
            // PATCH(milliwatt): answered by the endpoint
            endpoint.receive_refused(
                refused,
                remote,
                TpHandle {
                    transport: Transport::Udp(transport.clone()),
                },
            );
        }
        Ok(CompleteItem::Stun(message)) => {
            endpoint.receive_stun(
                message,
                remote,
                TpHandle {
                    transport: Transport::Udp(transport.clone()),
                },
            );
        }
        // PATCH(milliwatt): a request larger than the endpoint's limit gets 513 (RFC 3261
        // 21.5.13); anything else that large is dropped and counted
        Ok(CompleteItem::Sip { line, headers, .. })
            if bytes.len() > endpoint.message_limits().max_message_bytes =>
        {
            let answerable = matches!(
                &line,
                sip_types::msg::MessageLine::Request(l) if l.method != sip_types::Method::ACK
            );
            if answerable {
                let max = endpoint.message_limits().max_message_bytes;
                endpoint.receive_refused(
                    crate::transport::parse::Refused {
                        code: sip_types::StatusCode::MESSAGE_TOO_LARGE,
                        reason: format!("Message Too Large (limit {max} bytes)"),
                        headers,
                    },
                    remote,
                    TpHandle {
                        transport: Transport::Udp(transport.clone()),
                    },
                );
            } else {
                crate::count_dropped_malformed();
            }
        }
        Ok(CompleteItem::Sip {
            line,
            headers,
            body,
            buffer,
        }) => {
            let mut message = ReceivedMessage::new(
                remote,
                buffer,
                TpHandle {
                    transport: Transport::Udp(transport.clone()),
                },
                line,
                headers,
                body,
            );
            // PATCH(milliwatt): when the datagram reached the host, not when it was parsed
            if let Some(at) = received_at {
                message.tp_info.timestamp = at;
            }
            endpoint.receive(message);
        }
        Err(_e) => {
            // PATCH(milliwatt): counted; the parser logged why
            crate::count_dropped_malformed();
        }
    };

    Ok(())
}

// PATCH(milliwatt): a message's `tp_info.timestamp` is the kernel's receive time of its datagram
// (SO_TIMESTAMPNS), so the application can tell how long a request waited in the socket's
// receive queue and behind the messages before it: an overloaded server can refuse a request
// that has already waited too long at once (RFC 3261 21.5.4, 503). Where the option is
// refused, or off Linux, it stays the parse time.
#[cfg(target_os = "linux")]
fn enable_receive_timestamps(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};

    if let Err(e) = setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
        log::warn!("SO_TIMESTAMPNS on the UDP socket: {e}: a message's time is its parse time");
    }
}

#[cfg(not(target_os = "linux"))]
fn enable_receive_timestamps(_socket: &UdpSocket) {}

#[cfg(target_os = "linux")]
async fn recv_stamped(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    let fd = socket.as_raw_fd();
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    socket
        .async_io(tokio::io::Interest::READABLE, || {
            let mut iov = [io::IoSliceMut::new(&mut *buffer)];
            let msg = recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            let remote = msg
                .address
                .and_then(|a| match a.family() {
                    Some(nix::sys::socket::AddressFamily::Inet) => {
                        a.as_sockaddr_in().map(|v4| SocketAddr::V4((*v4).into()))
                    }
                    Some(nix::sys::socket::AddressFamily::Inet6) => {
                        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                    }
                    _ => None,
                })
                .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
            let at = msg.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(
                        SystemTime::UNIX_EPOCH
                            + Duration::new(
                                u64::try_from(ts.tv_sec()).ok()?,
                                u32::try_from(ts.tv_nsec()).ok()?,
                            ),
                    ),
                    _ => None,
                })
            });
            Ok((msg.bytes, remote, at))
        })
        .await
}

#[cfg(not(target_os = "linux"))]
async fn recv_stamped(
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    let (len, remote) = socket.recv_from(buffer).await?;
    Ok((len, remote, None))
}
