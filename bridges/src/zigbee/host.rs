//! The host side of ZNP, sans-IO: requests go out one synchronous request
//! at a time (Z-Stack serves SREQs in order, one in flight), each SRSP is
//! matched to its request by subsystem and command, a request that gets no
//! answer is sent again and finally fails, and a data request is done only
//! when its AF_DATA_CONFIRM arrives with the same transaction id — never on
//! the SRSP alone, which only says the stick queued it.
//!
//! Inputs: [`Host::request`], [`Host::handle_bytes`],
//! [`Host::handle_timeout`], [`Host::disconnected`]. Outputs:
//! [`Host::poll_transmit`], [`Host::poll_event`], [`Host::next_timeout`].

use std::collections::{BTreeMap, VecDeque};

use super::mt::{Indication, Request};
use super::znp::{Frame, Kind, Parser, Subsystem};

/// Names a request until its outcome.
pub type Token = u64;

/// Timing of requests.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long to wait for an SRSP (or for SYS_RESET_IND after a reset).
    pub response_ms: u64,
    /// Sends after the first before giving up.
    pub retries: u32,
    /// How long a queued data request may wait for its AF_DATA_CONFIRM.
    pub confirm_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            response_ms: 2_000,
            retries: 2,
            confirm_ms: 10_000,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no answer after {attempts} attempts")]
    Timeout { attempts: u32 },
    #[error("the coordinator answered status 0x{status:02x}")]
    Status { status: u8 },
    #[error("the coordinator does not know the command (RPC error 0x{code:02x})")]
    Rejected { code: u8 },
    #[error("the radio did not deliver it (status 0x{status:02x})")]
    NotDelivered { status: u8 },
    #[error("no delivery confirmation within the wait")]
    Unconfirmed,
    #[error("the coordinator went away before the outcome was known")]
    Disconnected,
}

/// What the host learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A synchronous request's answer (its SRSP data, or the reset
    /// indication's data for a reset).
    Response {
        token: Token,
        data: Vec<u8>,
    },
    /// A data request was delivered over the air.
    Delivered {
        token: Token,
    },
    Failed {
        token: Token,
        error: HostError,
    },
    /// Something the coordinator told unasked.
    Indication(Indication),
}

struct InFlight {
    token: Token,
    request: Request,
    bytes: Vec<u8>,
    deadline: u64,
    attempts: u32,
}

/// The host.
pub struct Host {
    timing: Timing,
    parser: Parser,
    out: VecDeque<Vec<u8>>,
    queue: VecDeque<(Token, Request)>,
    in_flight: Option<InFlight>,
    /// Data requests the stick accepted, by transaction id.
    confirms: BTreeMap<u8, (Token, u64)>,
    events: VecDeque<Event>,
    next_token: Token,
    next_trans_id: u8,
}

impl Host {
    pub fn new(timing: Timing) -> Host {
        Host {
            timing,
            parser: Parser::new(),
            out: VecDeque::new(),
            queue: VecDeque::new(),
            in_flight: None,
            confirms: BTreeMap::new(),
            events: VecDeque::new(),
            next_token: 1,
            next_trans_id: 1,
        }
    }

    /// Queues a request. A data request's transaction id is assigned here.
    pub fn request(&mut self, now_ms: u64, mut request: Request) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        if let Request::DataRequest { trans_id, .. } = &mut request {
            // Skip ids still waiting for a confirm.
            while self.confirms.contains_key(&self.next_trans_id) {
                self.next_trans_id = self.next_trans_id.wrapping_add(1);
            }
            *trans_id = self.next_trans_id;
            self.next_trans_id = self.next_trans_id.wrapping_add(1);
        }
        self.queue.push_back((token, request));
        self.send_next(now_ms);
        token
    }

    /// Bytes from the coordinator.
    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8]) {
        self.parser.handle_bytes(bytes);
        while let Some(frame) = self.parser.poll_frame() {
            self.handle_frame(now_ms, frame);
        }
    }

    /// Time passed: resend or fail what waited too long.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some(flight) = &mut self.in_flight {
            if now_ms >= flight.deadline {
                if flight.attempts <= self.timing.retries {
                    flight.attempts += 1;
                    flight.deadline = now_ms + self.timing.response_ms;
                    self.out.push_back(flight.bytes.clone());
                } else if let Some(flight) = self.in_flight.take() {
                    self.events.push_back(Event::Failed {
                        token: flight.token,
                        error: HostError::Timeout {
                            attempts: flight.attempts,
                        },
                    });
                    self.send_next(now_ms);
                }
            }
        }
        let expired: Vec<u8> = self
            .confirms
            .iter()
            .filter(|(_, (_, deadline))| now_ms >= *deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((token, _)) = self.confirms.remove(&id) {
                self.events.push_back(Event::Failed {
                    token,
                    error: HostError::Unconfirmed,
                });
            }
        }
    }

    /// The port is gone: every request in flight, queued or awaiting its
    /// confirm fails, so nothing is reported done that was not.
    pub fn disconnected(&mut self) {
        self.parser = Parser::new();
        self.out.clear();
        let flight = self.in_flight.take().map(|f| f.token);
        let queued = self.queue.drain(..).map(|(token, _)| token);
        let confirms = std::mem::take(&mut self.confirms)
            .into_values()
            .map(|(token, _)| token);
        let tokens: Vec<Token> = flight.into_iter().chain(queued).chain(confirms).collect();
        for token in tokens {
            self.events.push_back(Event::Failed {
                token,
                error: HostError::Disconnected,
            });
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Host::handle_timeout`] next has work.
    pub fn next_timeout(&self) -> Option<u64> {
        let flight = self.in_flight.as_ref().map(|f| f.deadline);
        let confirm = self.confirms.values().map(|(_, d)| *d).min();
        flight.into_iter().chain(confirm).min()
    }

    fn send_next(&mut self, now_ms: u64) {
        while self.in_flight.is_none() {
            let Some((token, request)) = self.queue.pop_front() else {
                return;
            };
            let bytes = match request.frame().encode() {
                Ok(bytes) => bytes,
                Err(_) => {
                    self.events.push_back(Event::Failed {
                        token,
                        error: HostError::Status { status: 0xff },
                    });
                    continue;
                }
            };
            self.out.push_back(bytes.clone());
            self.in_flight = Some(InFlight {
                token,
                request,
                bytes,
                deadline: now_ms + self.timing.response_ms,
                attempts: 1,
            });
        }
    }

    fn finish(&mut self, now_ms: u64, event: Event) {
        self.in_flight = None;
        self.events.push_back(event);
        self.send_next(now_ms);
    }

    fn handle_frame(&mut self, now_ms: u64, frame: Frame) {
        match frame.kind {
            Kind::Srsp => self.handle_srsp(now_ms, frame),
            Kind::Areq => {
                let Ok(Some(indication)) = Indication::parse(&frame) else {
                    return;
                };
                match &indication {
                    Indication::Reset { .. } => {
                        let waiting = self
                            .in_flight
                            .as_ref()
                            .filter(|f| matches!(f.request, Request::Reset { .. }))
                            .map(|f| f.token);
                        if let Some(token) = waiting {
                            self.finish(
                                now_ms,
                                Event::Response {
                                    token,
                                    data: frame.data.clone(),
                                },
                            );
                        }
                    }
                    Indication::DataConfirm {
                        status, trans_id, ..
                    } => {
                        if let Some((token, _)) = self.confirms.remove(trans_id) {
                            let event = if *status == 0 {
                                Event::Delivered { token }
                            } else {
                                Event::Failed {
                                    token,
                                    error: HostError::NotDelivered { status: *status },
                                }
                            };
                            self.events.push_back(event);
                        }
                        return;
                    }
                    _ => {}
                }
                self.events.push_back(Event::Indication(indication));
            }
            Kind::Sreq | Kind::Poll => {}
        }
    }

    fn handle_srsp(&mut self, now_ms: u64, frame: Frame) {
        let Some(flight) = &self.in_flight else {
            return;
        };
        let token = flight.token;
        if frame.subsystem == Subsystem::RpcError {
            let code = frame.data.first().copied().unwrap_or(0);
            self.finish(
                now_ms,
                Event::Failed {
                    token,
                    error: HostError::Rejected { code },
                },
            );
            return;
        }
        if flight.request.id() != (frame.subsystem, frame.command)
            || !flight.request.is_synchronous()
        {
            // A late answer to an earlier attempt of something else.
            return;
        }
        if let Request::DataRequest { trans_id, .. } = flight.request {
            let status = frame.data.first().copied().unwrap_or(0xff);
            if status == 0 {
                self.confirms
                    .insert(trans_id, (token, now_ms + self.timing.confirm_ms));
                self.in_flight = None;
                self.send_next(now_ms);
            } else {
                self.finish(
                    now_ms,
                    Event::Failed {
                        token,
                        error: HostError::Status { status },
                    },
                );
            }
            return;
        }
        self.finish(
            now_ms,
            Event::Response {
                token,
                data: frame.data,
            },
        );
    }
}
