use crate::error::Error;
use crate::transaction::TsxRegistration;
use crate::transaction::consts::{T1, T2};
use crate::transport::{OutgoingResponse, TpHandle};
use crate::{IncomingRequest, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use sip_types::msg::MessageLine;
use sip_types::{CodeKind, Method};
use std::io;
use std::time::Instant;
use tokio::time::timeout_at;

/// Server INVITE transaction. Used to respond to the incoming request.
///
/// Note that the correct functions must be used to send different kinds
/// of responses, as provisional, success and error responses all need
/// different handling.
///
/// Dropping the transaction prematurely can lead to weird/unexpected behavior.
#[derive(Debug)]
pub struct ServerInvTsx {
    registration: TsxRegistration,
    /// PATCH(milliwatt): last provisional response as sent (transport, destination, printed
    /// bytes). While set, INVITE retransmissions are answered with it (RFC 3261 17.2.1).
    last_provisional: Arc<parking_lot::Mutex<Option<(TpHandle, SocketAddr, Bytes)>>>,
}

impl ServerInvTsx {
    /// Internal: Used by [Endpoint::create_server_inv_tsx]
    pub(crate) fn new(request: &mut IncomingRequest) -> Self {
        assert_eq!(
            request.line.method,
            Method::INVITE,
            "tried to create invite transaction from {} request",
            request.line.method
        );

        let registration = request.take_tsx_registration();
        let last_provisional: Arc<parking_lot::Mutex<Option<(TpHandle, SocketAddr, Bytes)>>> =
            Default::default();

        // PATCH(milliwatt): answer INVITE retransmissions with the last provisional response.
        // Captures only the transport handle (no Endpoint) -> no reference cycle.
        let last = last_provisional.clone();
        registration.add_interceptor(move |msg| {
            if !matches!(&msg.line, MessageLine::Request(line) if line.method == Method::INVITE) {
                return false;
            }
            let Some((transport, destination, buffer)) = last.lock().clone() else {
                // nothing sent yet, or final response sent: keep the old behaviour
                return false;
            };
            log::debug!("INVITE retransmission: resending last provisional response");
            tokio::spawn(async move {
                if let Err(e) = transport.send(&buffer, destination).await {
                    log::warn!("Failed to resend provisional response, {e}");
                }
            });
            true
        });

        Self {
            registration,
            last_provisional,
        }
    }

    /// Respond with a provisional response (1XX)
    ///
    /// # Panics
    /// Panics if the given response is not a provisional response
    pub async fn respond_provisional(&mut self, response: &mut OutgoingResponse) -> Result<()> {
        assert_eq!(response.msg.line.code.kind(), CodeKind::Provisional);

        self.registration
            .endpoint
            .send_outgoing_response(response)
            .await?;

        // PATCH(milliwatt): remember it (the buffer now holds the printed message)
        *self.last_provisional.lock() = Some((
            response.parts.transport.clone(),
            response.parts.destination,
            response.parts.buffer.clone(),
        ));

        Ok(())
    }

    /// Respond with a success response (2XX)
    ///
    /// # Returns
    /// The [`Accepted`] struct represents the `Accepted` state of the transactions.
    /// TU is responsible for retransmits of the final success response since TU is the
    /// one receiving the ACK request and not the transaction.
    ///
    /// # Panics
    /// Panics if the given response is not a success response
    pub async fn respond_success(self, mut response: OutgoingResponse) -> Result<Accepted> {
        assert_eq!(response.msg.line.code.kind(), CodeKind::Success);

        // PATCH(milliwatt): final response from here on, stop answering with the provisional
        *self.last_provisional.lock() = None;

        // Responding with a success message!
        // Add filter to reject any ACK messages as some implementations seem to re-use the transaction-id for the ACK
        // sent by the UAC.
        self.registration.add_filter(|tsx_msg| !matches!(&tsx_msg.line, MessageLine::Request(line) if line.method == Method::ACK));

        self.registration
            .endpoint
            .send_outgoing_response(&mut response)
            .await?;

        Ok(Accepted {
            registration: Some(self.registration),
            response,
            // PATCH(milliwatt): Timer L runs from the first 2xx
            timer_l: tokio::time::Instant::now() + T1 * 64,
        })
    }

    /// Respond with a failure response (3XX-6XX)
    ///
    /// # Panics
    /// Panics if the given response is not a error response
    pub async fn respond_failure(mut self, mut response: OutgoingResponse) -> Result<()> {
        assert!(!matches!(
            response.msg.line.code.kind(),
            CodeKind::Provisional | CodeKind::Success
        ));

        // PATCH(milliwatt): final response from here on, stop answering with the provisional
        *self.last_provisional.lock() = None;

        self.registration
            .endpoint
            .send_outgoing_response(&mut response)
            .await?;

        // after this instant is over the tsx will time out
        let abandon_retransmit = Instant::now() + T1 * 64;

        // the duration to wait until next retransmit
        let mut retransmit_delta = T1;

        // timestamp for next retransmit
        let mut retransmit = Instant::now() + retransmit_delta;

        // wait for ack and retransmit if necessary
        loop {
            match timeout_at(retransmit.into(), self.registration.receive()).await {
                Ok(inc_msg) => {
                    // two things are allowed to happen here
                    // 1 - the transaction receives a retransmission of the initial invite
                    // 2 - it receives an ACK request which completes the transaction
                    match &inc_msg.line {
                        MessageLine::Request(line) if line.method == Method::INVITE => {
                            // in case of a retransmission,
                            // retransmits the response
                            self.registration
                                .endpoint
                                .send_outgoing_response(&mut response)
                                .await?;
                        }
                        MessageLine::Request(line) if line.method == Method::ACK => {
                            // in case of an ACK the transaction is completed
                            return Ok(());
                        }
                        _ => {
                            // everything else gets ignored
                        }
                    }
                }
                Err(_) => {
                    // retransmit timeout triggered

                    if Instant::now() > abandon_retransmit {
                        return Err(Error::RequestTimedOut);
                    }

                    // do the retransmit
                    self.registration
                        .endpoint
                        .send_outgoing_response(&mut response)
                        .await?;

                    // increase the wait time until next retransmit
                    retransmit_delta = (retransmit_delta * 2).min(T2);

                    // set next timestamp
                    retransmit = Instant::now() + retransmit_delta;
                }
            }
        }
    }
}

/// Represents the `Accepted` state of a transaction. Its used to retransmit the
/// final success response to eventually receive the ACK request from the peer.
///
/// PATCH(milliwatt): dropping it does not end the transaction at once: RFC 6026 section 7.1
/// keeps the server INVITE transaction in `Accepted` until Timer L (64*T1 after the 2xx),
/// absorbing retransmissions of the INVITE, which 0.9.2 handed to the layers as new requests
/// once the ACK had arrived (a retransmission delayed behind a burst became a second "call").
#[must_use]
pub struct Accepted {
    /// PATCH(milliwatt): `Some` until dropped
    registration: Option<TsxRegistration>,
    response: OutgoingResponse,
    /// PATCH(milliwatt): when the transaction leaves `Accepted` (RFC 6026 Timer L)
    timer_l: tokio::time::Instant,
}

impl Accepted {
    /// Retransmit the final response
    pub async fn retransmit(&mut self) -> io::Result<()> {
        let registration = self
            .registration
            .as_ref()
            .expect("PATCH(milliwatt): only taken on drop");
        registration
            .endpoint
            .send_outgoing_response(&mut self.response)
            .await
    }
}

// PATCH(milliwatt): RFC 6026 section 7.1 (and 8.7): the transaction stays until Timer L;
// an INVITE retransmission is absorbed, anything else matching it (the ACK) goes on to the
// layers (the TU) as before. Outside a runtime it ends at once, as in 0.9.2.
impl Drop for Accepted {
    fn drop(&mut self) {
        let Some(registration) = self.registration.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        registration.absorb_invite_retransmissions();
        let timer_l = self.timer_l;
        runtime.spawn(async move {
            tokio::time::sleep_until(timer_l).await;
            drop(registration);
        });
    }
}
