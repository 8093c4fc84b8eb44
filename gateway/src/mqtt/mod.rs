//! The gateway's MQTT records: logins and setup codes
//! ([`logins`]). The bridge itself is `crate::service::mqtt`.

pub mod logins;
