//! The topic layout and who may use which topics.
//!
//! What integrations see follows Zigbee2MQTT (its "MQTT topics and
//! messages" guide), under a configurable base topic (default `itc`):
//!
//! - `<base>/<friendly_name>` — a light's state (retained), published by
//!   the gateway only, after it checked the device's signature;
//! - `<base>/<friendly_name>/set` — commands, which the gateway carries out
//!   only when chain state authorises the sender's account;
//! - `<base>/<friendly_name>/availability` (retained);
//! - `<base>/bridge/state` (retained), `<base>/bridge/devices` (retained),
//!   `<base>/bridge/event`, `<base>/bridge/request/permit_join` answered on
//!   `<base>/bridge/response/permit_join`;
//! - `homeassistant/light/<unique_id>/config` — Home Assistant discovery
//!   (retained), and `homeassistant/status`, Home Assistant's birth message.
//!
//! Devices and onboarding use their own namespaces, outside the base, so no
//! filter an integration may subscribe to can reach them:
//!
//! - `<base>-device/<device>/report` — a device's signed state (device
//!   publishes), `<base>-device/<device>/command` (device subscribes);
//! - `<base>-device/<device>/dag` — a DAG transaction the device signed
//!   and did the work for, encoded (an empty payload asks for parents
//!   only); the gateway submits it on the device's behalf and answers on
//!   `<base>-device/<device>/dag/reply` with its id or the refusal, and
//!   parents for the next one;
//! - `<base>-provision/<client>/challenge|hello|response` — onboarding.
//!
//! [`Acl`] is the whole policy: a role may publish to a topic or subscribe
//! to a filter only if this module says so. The front ([`super::front`])
//! asks it for every PUBLISH, SUBSCRIBE and will message.

use rumqttc::mqttbytes::{matches, valid_filter, valid_topic};

/// Home Assistant's discovery prefix (its default).
pub const DISCOVERY_PREFIX: &str = "homeassistant";

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// An onboarded device, by its id on chain.
    Device { device: String },
    /// An integration (Home Assistant, Node-RED) acting for an account.
    Integration { name: String },
    /// A new device holding a setup code, by the client id it connected
    /// with; `session` tells apart two connections with one client id.
    Provisioning { client: String, session: u64 },
}

/// The topic layout under one base topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// `base` must be a plain topic level sequence without wildcards.
    pub fn new(base: &str) -> Option<Topics> {
        let ok = !base.is_empty()
            && valid_topic(base)
            && !base.contains(['+', '#'])
            && !base.starts_with('$')
            && base != DISCOVERY_PREFIX;
        ok.then(|| Topics { base: base.into() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn state(&self, friendly: &str) -> String {
        format!("{}/{friendly}", self.base)
    }

    pub fn set(&self, friendly: &str) -> String {
        format!("{}/{friendly}/set", self.base)
    }

    pub fn availability(&self, friendly: &str) -> String {
        format!("{}/{friendly}/availability", self.base)
    }

    pub fn bridge(&self, rest: &str) -> String {
        format!("{}/bridge/{rest}", self.base)
    }

    /// Every light's set topic.
    pub fn set_filter(&self) -> String {
        format!("{}/+/set", self.base)
    }

    pub fn discovery(&self, unique_id: &str) -> String {
        format!("{DISCOVERY_PREFIX}/light/{unique_id}/config")
    }

    pub fn device_report(&self, device: &str) -> String {
        format!("{}-device/{device}/report", self.base)
    }

    pub fn device_command(&self, device: &str) -> String {
        format!("{}-device/{device}/command", self.base)
    }

    pub fn device_dag(&self, device: &str) -> String {
        format!("{}-device/{device}/dag", self.base)
    }

    pub fn device_dag_reply(&self, device: &str) -> String {
        format!("{}-device/{device}/dag/reply", self.base)
    }

    /// Every device's DAG topic.
    pub fn dag_filter(&self) -> String {
        format!("{}-device/+/dag", self.base)
    }

    /// The device a DAG topic is from.
    pub fn parse_dag<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix("-device/")?;
        rest.strip_suffix("/dag").filter(|d| !d.contains('/'))
    }

    /// Every device's report topic.
    pub fn report_filter(&self) -> String {
        format!("{}-device/+/report", self.base)
    }

    pub fn provision(&self, client: &str, leaf: &str) -> String {
        format!("{}-provision/{client}/{leaf}", self.base)
    }

    /// Where an integration's message goes once the front let it through:
    /// `<base>-integration/<name>/<topic>`, so the gateway knows whose
    /// command it is (subscribers are not told who published).
    pub fn from_integration(&self, name: &str, topic: &str) -> String {
        format!("{}-integration/{name}/{topic}", self.base)
    }

    /// Every integration's messages.
    pub fn integration_filter(&self) -> String {
        format!("{}-integration/#", self.base)
    }

    /// The integration and original topic of a routed message.
    pub fn parse_integration<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic
            .strip_prefix(&self.base)?
            .strip_prefix("-integration/")?;
        rest.split_once('/')
    }

    /// Every onboarding hello.
    pub fn hello_filter(&self) -> String {
        format!("{}-provision/+/hello", self.base)
    }

    /// The light a `<base>/<friendly>/set` topic is for.
    pub fn parse_set<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let friendly = rest.strip_suffix("/set")?;
        (!friendly.is_empty() && friendly != "bridge").then_some(friendly)
    }

    /// The device a report topic is from.
    pub fn parse_report<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix("-device/")?;
        rest.strip_suffix("/report").filter(|d| !d.contains('/'))
    }

    /// The client an onboarding hello is from.
    pub fn parse_hello<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(&self.base)?
            .strip_prefix("-provision/")?;
        rest.strip_suffix("/hello").filter(|c| !c.contains('/'))
    }
}

/// A topic level taken from a client (a client id, a device id) is usable
/// in a topic only if it is one plain level.
pub fn plain_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0']) && !s.starts_with('$')
}

/// The topic policy.
#[derive(Clone, Debug)]
pub struct Acl {
    topics: Topics,
}

impl Acl {
    pub fn new(topics: Topics) -> Acl {
        Acl { topics }
    }

    /// Whether `role` may publish to `topic`.
    pub fn may_publish(&self, role: &Role, topic: &str) -> bool {
        self.route(role, topic).is_some()
    }

    /// Where a publish from `role` to `topic` goes, if it may be made at
    /// all: commands and bridge requests from an integration are routed to
    /// the gateway under the integration's name; everything else allowed
    /// goes where it was sent.
    pub fn route(&self, role: &Role, topic: &str) -> Option<String> {
        if !valid_topic(topic) || topic.contains(['+', '#']) {
            return None;
        }
        let t = &self.topics;
        let allowed = match role {
            Role::Device { device } => {
                topic == t.device_report(device) || topic == t.device_dag(device)
            }
            Role::Provisioning { client, .. } => topic == t.provision(client, "hello"),
            Role::Integration { name } => {
                if t.parse_set(topic).is_some() || matches(topic, &t.bridge("request/+")) {
                    return Some(t.from_integration(name, topic));
                }
                topic == format!("{DISCOVERY_PREFIX}/status")
            }
        };
        allowed.then(|| topic.to_string())
    }

    /// Whether `role` may subscribe to `filter`. Wildcards are allowed only
    /// below a first level the role may read, so no filter reaches another
    /// role's topics.
    pub fn may_subscribe(&self, role: &Role, filter: &str) -> bool {
        if !valid_filter(filter) {
            return false;
        }
        let t = &self.topics;
        match role {
            Role::Device { device } => {
                filter == t.device_command(device) || filter == t.device_dag_reply(device)
            }
            Role::Provisioning { client, .. } => {
                filter == t.provision(client, "challenge")
                    || filter == t.provision(client, "response")
            }
            Role::Integration { .. } => {
                let first = filter.split('/').next().unwrap_or_default();
                first == t.base() || first == DISCOVERY_PREFIX
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl() -> Acl {
        Acl::new(Topics::new("itc").unwrap())
    }

    #[test]
    fn devices_stay_in_their_own_topics() {
        let acl = acl();
        let a = Role::Device {
            device: "mqtt:aa".into(),
        };
        assert!(acl.may_publish(&a, "itc-device/mqtt:aa/report"));
        assert!(acl.may_publish(&a, "itc-device/mqtt:aa/dag"));
        assert!(!acl.may_publish(&a, "itc-device/mqtt:bb/dag"));
        assert!(!acl.may_publish(&a, "itc-device/mqtt:aa/dag/reply"));
        assert!(acl.may_subscribe(&a, "itc-device/mqtt:aa/dag/reply"));
        assert!(!acl.may_subscribe(&a, "itc-device/mqtt:bb/dag/reply"));
        assert!(!acl.may_publish(&a, "itc-device/mqtt:bb/report"));
        assert!(
            !acl.may_publish(&a, "itc/mqtt:aa"),
            "state comes from the gateway"
        );
        assert!(!acl.may_publish(&a, "itc/mqtt:bb/set"));
        assert!(!acl.may_publish(&a, "itc-device/+/report"));
        assert!(acl.may_subscribe(&a, "itc-device/mqtt:aa/command"));
        assert!(!acl.may_subscribe(&a, "itc-device/+/command"));
        assert!(!acl.may_subscribe(&a, "#"));
        assert!(!acl.may_subscribe(&a, "itc/#"));
    }

    #[test]
    fn integrations_read_states_and_send_commands_only() {
        let acl = acl();
        let ha = Role::Integration {
            name: "home-assistant".into(),
        };
        assert!(acl.may_subscribe(&ha, "itc/#"));
        assert!(acl.may_subscribe(&ha, "homeassistant/#"));
        assert!(acl.may_subscribe(&ha, "itc/+/availability"));
        for reach in [
            "#",
            "+/#",
            "itc-device/#",
            "itc-provision/#",
            "+/+/report",
            "$SYS/#",
        ] {
            assert!(!acl.may_subscribe(&ha, reach), "{reach}");
        }
        assert!(acl.may_publish(&ha, "itc/zigbee:0011/set"));
        assert_eq!(
            acl.route(&ha, "itc/zigbee:0011/set").as_deref(),
            Some("itc-integration/home-assistant/itc/zigbee:0011/set")
        );
        assert_eq!(
            acl.topics
                .parse_integration("itc-integration/home-assistant/itc/zigbee:0011/set"),
            Some(("home-assistant", "itc/zigbee:0011/set"))
        );
        assert!(acl.may_publish(&ha, "itc/bridge/request/permit_join"));
        assert!(acl.may_publish(&ha, "homeassistant/status"));
        assert!(!acl.may_publish(&ha, "itc/zigbee:0011"), "no forged states");
        assert!(!acl.may_publish(&ha, "itc/bridge/state"));
        assert!(!acl.may_publish(&ha, "itc/bridge/set"));
        assert!(!acl.may_publish(&ha, "homeassistant/light/x/config"));
        assert!(!acl.may_publish(&ha, "itc-device/mqtt:aa/command"));
    }

    #[test]
    fn onboarding_sees_only_its_own_exchange() {
        let acl = acl();
        let p = Role::Provisioning {
            session: 1,
            client: "esp-1".into(),
        };
        assert!(acl.may_publish(&p, "itc-provision/esp-1/hello"));
        assert!(!acl.may_publish(&p, "itc-provision/esp-2/hello"));
        assert!(acl.may_subscribe(&p, "itc-provision/esp-1/response"));
        assert!(acl.may_subscribe(&p, "itc-provision/esp-1/challenge"));
        assert!(!acl.may_subscribe(&p, "itc-provision/+/response"));
        assert!(!acl.may_subscribe(&p, "itc-provision/esp-1/#"));
    }

    #[test]
    fn the_layout_round_trips() {
        let t = Topics::new("home/itc").unwrap();
        assert_eq!(t.parse_set(&t.set("zigbee:01")), Some("zigbee:01"));
        assert_eq!(t.parse_set(&t.bridge("set")), None);
        assert_eq!(t.parse_report(&t.device_report("mqtt:ab")), Some("mqtt:ab"));
        assert_eq!(t.parse_dag(&t.device_dag("mqtt:ab")), Some("mqtt:ab"));
        assert_eq!(t.parse_dag(&t.device_dag_reply("mqtt:ab")), None);
        assert_eq!(t.parse_hello(&t.provision("c1", "hello")), Some("c1"));
        assert_eq!(t.parse_hello("home/itc-provision/a/b/hello"), None);
        assert!(Topics::new("itc/#").is_none());
        assert!(Topics::new("homeassistant").is_none());
        assert!(plain_level("mqtt:ab") && !plain_level("a/b") && !plain_level("+"));
    }
}
