//! Platform time for `timing/current_time` and `timing/timing_caps`, read from the host clock and
//! the kernel's NTP discipline state: no network round-trip per request.

use std::time::SystemTime;

use serde::Serialize;

use crate::clock::unix_parts;
use crate::model::service::TimeStamp;

/// `timeSourceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = CurrentTime::TimeSourceStatus)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeSourceStatus {
    Traceable,
    Nontraceable,
}

/// `CurrentTime`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentTime {
    pub seconds: u64,
    pub nano_seconds: u32,
    pub time_source_status: TimeSourceStatus,
}

/// `ntpServerAddrType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = TimingCaps::NtpServers::NtpServerAddrType)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NtpServerAddrType {
    IpAddress,
    DnsName,
}

/// `authenticationOption` of an NTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = TimingCaps::NtpServers::AuthenticationOption)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthenticationOption {
    None,
    SymmetricKey,
    AutoKey,
}

/// One entry of `TimingCaps.ntpServers`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TimingCaps::NtpServers)]
#[serde(rename_all = "camelCase")]
pub struct NtpServer {
    pub ntp_server_addr_type: NtpServerAddrType,
    pub ntp_server_addr: String,
    pub min_polling_interval: u32,
    pub max_polling_interval: u32,
    pub local_priority: u32,
    pub authentication_option: AuthenticationOption,
    pub authentication_key_num: u32,
}

impl NtpServer {
    /// An NTP server as the operator named it (an IP address or a DNS name), with the polling
    /// bounds of common NTP clients (2^6 .. 2^10 s).
    pub fn named(addr: &str) -> Self {
        Self {
            ntp_server_addr_type: if addr.parse::<std::net::IpAddr>().is_ok() {
                NtpServerAddrType::IpAddress
            } else {
                NtpServerAddrType::DnsName
            },
            ntp_server_addr: addr.to_owned(),
            min_polling_interval: 6,
            max_polling_interval: 10,
            local_priority: 1,
            authentication_option: AuthenticationOption::None,
            authentication_key_num: 0,
        }
    }
}

/// One entry of `TimingCaps.ptpMasters`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TimingCaps_PtpMasters)]
#[serde(rename_all = "camelCase")]
pub struct PtpMaster {
    pub ptp_master_ip_address: String,
    pub ptp_master_local_priority: u32,
    pub delay_req_max_rate: u32,
}

impl PtpMaster {
    /// A PTP master as the operator named it, at the default Delay_Req rate of IEEE 1588
    /// (one per second).
    pub fn at(addr: std::net::IpAddr) -> Self {
        Self {
            ptp_master_ip_address: addr.to_string(),
            ptp_master_local_priority: 1,
            delay_req_max_rate: 1,
        }
    }
}

/// `TimingCaps`. Both lists are always present (v3.1.1 requires them), empty when the
/// operator configured none.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimingCaps<'a> {
    pub time_stamp: TimeStamp,
    pub ntp_servers: &'a [NtpServer],
    pub ptp_masters: &'a [PtpMaster],
}

/// Whether the kernel considers the clock synchronized to a reference (NTP/PTP discipline).
pub fn host_clock_status() -> TimeSourceStatus {
    // SAFETY: ntp_adjtime with modes = 0 only reads the kernel's timex state into `tx`.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        TimeSourceStatus::Nontraceable
    } else {
        TimeSourceStatus::Traceable
    }
}

pub fn current_time(now: SystemTime) -> CurrentTime {
    let (seconds, nano_seconds) = unix_parts(now);
    CurrentTime {
        seconds,
        nano_seconds,
        time_source_status: host_clock_status(),
    }
}
