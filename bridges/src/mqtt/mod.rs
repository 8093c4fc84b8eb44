//! The MQTT bridge: Wi-Fi bulbs and plugs, and integrations such as Home
//! Assistant, through an embedded broker (rumqttd).
//!
//! rumqttd authenticates a connection but has no per-topic permissions, and
//! Mirai spread through devices that let anyone in. So nobody reaches the
//! broker directly: [`front`] accepts every client, authenticates it with
//! the gateway ([`front::Authenticator`]), and checks each PUBLISH and
//! SUBSCRIBE against [`topics::Acl`] before passing it on, using rumqttc's
//! MQTT 3.1.1 codec. The broker itself listens on loopback and takes only
//! the front's and the gateway's own per-run credentials ([`broker`]).
//!
//! - [`topics`]: the topic layout (Zigbee2MQTT's, plus device and
//!   onboarding namespaces) and the ACL;
//! - [`z2m`]: Zigbee2MQTT and Home Assistant payloads;
//! - [`signed`]: what devices sign (onboarding hellos, state reports);
//! - [`broker`], [`front`]: the IO; [`tls`]: the front's optional TLS;
//! - [`device`]: a simulated Wi-Fi bulb on a real MQTT client.

pub mod broker;
pub mod device;
pub mod front;
pub mod signed;
pub mod tls;
pub mod topics;
pub mod z2m;
