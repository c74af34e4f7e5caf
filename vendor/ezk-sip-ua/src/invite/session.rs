use super::Inner;
use super::timer::SessionTimer;
use crate::dialog::{Dialog, UsageGuard};
use crate::invite::AwaitedAck;
use sip_core::transaction::{ServerInvTsx, ServerTsx, TsxResponse};
use sip_core::transport::OutgoingResponse;
use sip_core::{Endpoint, IncomingRequest, Request, Result};
use sip_types::header::typed::Refresher;
use sip_types::{CodeKind, Method, StatusCode};
use std::sync::Arc;
use tokio::select;
use tokio::sync::mpsc::{self, Receiver};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub enum Role {
    Uac,
    Uas,
}

#[derive(Debug)]
pub struct InviteSession {
    pub endpoint: Endpoint,
    inner: Arc<Inner>,

    pub role: Role,

    /// Receiver side of dialog-usage events
    usage_events: Receiver<Box<UsageEvent>>,

    pub session_timer: SessionTimer,

    // drop usage before dialog
    _usage_guard: UsageGuard,
    pub dialog: Arc<Dialog>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionRefreshError {
    #[error(transparent)]
    Core(#[from] sip_core::Error),
    #[error("Unexpected status code {0:?}")]
    UnexpectedStatus(StatusCode),
}

#[allow(clippy::large_enum_variant)] // TODO address this
pub enum InviteSessionEvent {
    RefreshNeeded,
    Notify(IncomingRequest),
    ReInviteReceived(ReInviteReceived),
    Bye(ByeEvent),
    /// PATCH(milliwatt): an INFO request inside the dialog (RFC 6086)
    Info(InfoEvent),
    /// PATCH(milliwatt): an UPDATE request inside the established dialog (RFC 3311)
    Update(UpdateEvent),
    Terminated,
}

/// PATCH(milliwatt): an INFO request inside the dialog (RFC 6086), its server transaction
/// created: build the answer with `InviteSession::dialog`'s `create_response` and send it with
/// `respond`.
pub struct InfoEvent {
    pub info: IncomingRequest,
    transaction: ServerTsx,
}

impl InfoEvent {
    pub async fn respond(self, response: OutgoingResponse) -> Result<()> {
        self.transaction.respond(response).await
    }
}

/// PATCH(milliwatt): an UPDATE inside the established dialog (RFC 3311), its server transaction
/// created: answered like an INFO (a 2xx carries the SDP answer when the UPDATE had an offer).
pub struct UpdateEvent {
    pub update: IncomingRequest,
    transaction: ServerTsx,
}

impl UpdateEvent {
    pub async fn respond(self, response: OutgoingResponse) -> Result<()> {
        self.transaction.respond(response).await
    }
}

pub struct ReInviteReceived {
    pub invite: IncomingRequest,
    pub transaction: ServerInvTsx,
}

impl ReInviteReceived {
    /// Respond with a successful response, returns the received ACK request
    pub async fn respond_success(
        self,
        invite_session: &mut InviteSession,
        response: OutgoingResponse,
    ) -> Result<IncomingRequest> {
        let (ack_sender, ack_recv) = oneshot::channel();

        *invite_session.inner.awaited_ack.lock() = Some(AwaitedAck {
            cseq: self.invite.base_headers.cseq.cseq,
            ack_sender,
        });

        let accepted = self.transaction.respond_success(response).await?;

        super::receive_ack(accepted, ack_recv).await
    }
}

pub struct ByeEvent {
    bye: IncomingRequest,
    transaction: ServerTsx,
}

impl InviteSession {
    pub(super) fn new(
        endpoint: Endpoint,
        inner: Arc<Inner>,
        role: Role,
        usage_events: mpsc::Receiver<Box<UsageEvent>>,
        session_timer: SessionTimer,
        usage_guard: UsageGuard,
        dialog: Dialog,
    ) -> Self {
        Self {
            endpoint,
            inner,
            role,
            usage_events,
            session_timer,
            _usage_guard: usage_guard,
            dialog: Arc::new(dialog),
        }
    }

    pub async fn run(&mut self) -> Result<InviteSessionEvent> {
        // PATCH(milliwatt): the handlers boxed: inline, their futures (answering a request
        // through a transaction) made this future 6.3 KB, held by the application for as long
        // as it waits for the session's next event, i.e. the whole call
        select! {
            _ = self.session_timer.wait() => {
               Box::pin(self.handle_session_timer()).await
            }
            event = self.usage_events.recv() => {
                Box::pin(self.handle_usage_event(event.map(|e| *e))).await
            }
        }
    }

    pub async fn terminate(&mut self) -> Result<TsxResponse, sip_core::Error> {
        self.terminate_with(|_| {}).await
    }

    /// PATCH(milliwatt): `terminate` with headers of the application's in the BYE
    pub async fn terminate_with(
        &mut self,
        add: impl FnOnce(&mut Request),
    ) -> Result<TsxResponse, sip_core::Error> {
        let mut state = self.inner.state.lock().await;
        state.set_terminated();

        let mut request = self.dialog.create_request(Method::BYE, None);
        add(&mut request);

        let mut target_tp_info = self.dialog.target_tp_info.lock().await;

        let mut transaction = self
            .endpoint
            .send_request(request, &mut target_tp_info)
            .await?;

        drop(target_tp_info);

        transaction.receive_final().await
    }

    async fn handle_usage_event(&mut self, evt: Option<UsageEvent>) -> Result<InviteSessionEvent> {
        let evt = if let Some(evt) = evt {
            evt
        } else {
            // Usage events channel has been dropped,
            // because the state was set to Terminated.
            return Ok(InviteSessionEvent::Terminated);
        };

        match evt {
            UsageEvent::Notify(mut incoming_request) => {
                // Always respond with 200 OK
                let transaction = self.endpoint.create_server_tsx(&mut incoming_request);
                let response =
                    self.dialog
                        .create_response(&incoming_request, StatusCode::OK, None)?;
                transaction.respond(response).await?;

                Ok(InviteSessionEvent::Notify(incoming_request))
            }
            // PATCH(milliwatt): the application answers an UPDATE
            UsageEvent::Update(mut request) => {
                let transaction = self.endpoint.create_server_tsx(&mut request);

                Ok(InviteSessionEvent::Update(UpdateEvent {
                    update: request,
                    transaction,
                }))
            }
            // PATCH(milliwatt): the application answers an INFO
            UsageEvent::Info(mut request) => {
                let transaction = self.endpoint.create_server_tsx(&mut request);

                Ok(InviteSessionEvent::Info(InfoEvent {
                    info: request,
                    transaction,
                }))
            }
            UsageEvent::Bye(mut request) => {
                let transaction = self.endpoint.create_server_tsx(&mut request);

                Ok(InviteSessionEvent::Bye(ByeEvent {
                    bye: request,
                    transaction,
                }))
            }
            UsageEvent::ReInvite(mut invite) => {
                self.session_timer.reset();

                let transaction = self.endpoint.create_server_inv_tsx(&mut invite);

                Ok(InviteSessionEvent::ReInviteReceived(ReInviteReceived {
                    invite,
                    transaction,
                }))
            }
        }
    }

    async fn handle_session_timer(&mut self) -> Result<InviteSessionEvent> {
        match (self.role, self.session_timer.refresher) {
            (_, Refresher::Unspecified) => unreachable!(),
            (Role::Uac, Refresher::Uac) | (Role::Uas, Refresher::Uas) => {
                // We are responsible for the refresh
                // Timer expired meaning we are responsible for refresh now
                self.session_timer.reset();

                Ok(InviteSessionEvent::RefreshNeeded)
            }
            (Role::Uac, Refresher::Uas) | (Role::Uas, Refresher::Uac) => {
                // Peer is responsible for refresh
                // Timer expired meaning we didn't get a RE-INVITE
                self.terminate().await?;
                Ok(InviteSessionEvent::Terminated)
            }
        }
    }

    pub async fn refresh(&mut self) -> Result<(), SessionRefreshError> {
        self.session_timer.reset();

        let mut invite = self.dialog.create_request(Method::INVITE, None);
        self.session_timer.populate_refresh(&mut invite);

        let mut target_tp_info = self.dialog.target_tp_info.lock().await;

        let mut transaction = self
            .endpoint
            .send_invite(invite, &mut target_tp_info)
            .await?;

        drop(target_tp_info);

        let mut ack = None;

        while let Some(response) = transaction.receive().await? {
            match response.line.code.kind() {
                CodeKind::Provisional => { /* ignore */ }
                CodeKind::Success => {
                    let ack = if let Some(ack) = &mut ack {
                        ack
                    } else {
                        let ack_req =
                            super::create_ack(&self.dialog, response.base_headers.cseq.cseq)
                                .await?;

                        ack.insert(ack_req)
                    };

                    self.endpoint
                        .send_outgoing_request(ack)
                        .await
                        .map_err(sip_core::Error::from)?;
                }
                _ => return Err(SessionRefreshError::UnexpectedStatus(response.line.code)),
            }
        }

        Ok(())
    }

    pub async fn handle_bye(&mut self, event: ByeEvent) -> Result<()> {
        self.handle_bye_with(event, |_| {}).await
    }

    /// PATCH(milliwatt): `handle_bye` with headers of the application's in the 200
    pub async fn handle_bye_with(
        &mut self,
        event: ByeEvent,
        add: impl FnOnce(&mut OutgoingResponse),
    ) -> Result<()> {
        let mut response = self
            .dialog
            .create_response(&event.bye, StatusCode::OK, None)?;
        add(&mut response);

        event.transaction.respond(response).await?;

        Ok(())
    }

    pub async fn handle_reinvite_success(
        &mut self,
        event: ReInviteReceived,
        response: OutgoingResponse,
    ) -> Result<IncomingRequest> {
        let (ack_sender, ack_recv) = oneshot::channel();

        *self.inner.awaited_ack.lock() = Some(AwaitedAck {
            cseq: event.invite.base_headers.cseq.cseq,
            ack_sender,
        });

        let accepted = event.transaction.respond_success(response).await?;

        super::receive_ack(accepted, ack_recv).await
    }
}

/// PATCH(milliwatt): sent boxed (`Box<UsageEvent>`): tokio allocates a channel's first block of
/// 32 slots at once, about 38 KB per call with an `IncomingRequest` in each slot.
pub(super) enum UsageEvent {
    Notify(IncomingRequest),
    // PATCH(milliwatt): see `InfoEvent`, `UpdateEvent`
    Info(IncomingRequest),
    Update(IncomingRequest),
    ReInvite(IncomingRequest),
    Bye(IncomingRequest),
}
