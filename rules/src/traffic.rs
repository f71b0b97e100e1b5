//! `TrafficRule` and its parts (MEC 011 clauses 7.1.2.2, 7.1.2.3, 7.1.2.5), and their compiled,
//! checked form.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize};

use crate::RuleState;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl RuleError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// `filterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TrafficRule::FilterType))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterType {
    Flow,
    Packet,
}

/// `action`. EdgeGallery's `FORWARD_AS_IS`/`DUPLICATE_AS_IS` are accepted for the spec's
/// `FORWARD_ENCAPSULATED`/`DUPLICATE_ENCAPSULATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TrafficRule::Action))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Drop,
    ForwardDecapsulated,
    #[serde(alias = "FORWARD_AS_IS")]
    ForwardEncapsulated,
    Passthrough,
    DuplicateDecapsulated,
    #[serde(alias = "DUPLICATE_AS_IS")]
    DuplicateEncapsulated,
}

/// `interfaceType` of a destination interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(as = DestinationInterface::InterfaceType)
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InterfaceType {
    Tunnel,
    Mac,
    Ip,
}

/// `tunnelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TunnelInfo::TunnelType))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TunnelType {
    GtpU,
    Gre,
}

/// `TunnelInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TunnelInfo {
    pub tunnel_type: TunnelType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_dst_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_src_address: Option<String>,
}

/// `DestinationInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DestinationInterface {
    pub interface_type: InterfaceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_info: Option<TunnelInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip_address: Option<String>,
}

impl DestinationInterface {
    fn validate(&self) -> Result<(), RuleError> {
        for mac in [&self.src_mac_address, &self.dst_mac_address]
            .into_iter()
            .flatten()
        {
            parse_mac(mac)?;
        }
        if let Some(ip) = &self.dst_ip_address {
            parse_ip("dstInterface.dstIpAddress", ip)?;
        }
        if let Some(t) = &self.tunnel_info {
            for ip in [&t.tunnel_dst_address, &t.tunnel_src_address]
                .into_iter()
                .flatten()
            {
                parse_ip("dstInterface.tunnelInfo address", ip)?;
            }
        }
        match self.interface_type {
            InterfaceType::Tunnel if self.tunnel_info.is_none() => Err(RuleError::new(
                "dstInterface of type TUNNEL needs tunnelInfo",
            )),
            InterfaceType::Mac if self.dst_mac_address.is_none() => Err(RuleError::new(
                "dstInterface of type MAC needs dstMacAddress",
            )),
            InterfaceType::Ip if self.dst_ip_address.is_none() => {
                Err(RuleError::new("dstInterface of type IP needs dstIpAddress"))
            }
            _ => Ok(()),
        }
    }

    /// The destination MAC address, if the interface names one.
    pub fn dst_mac(&self) -> Option<[u8; 6]> {
        self.dst_mac_address
            .as_deref()
            .and_then(|m| parse_mac(m).ok())
    }

    /// The source MAC address, if the interface names one.
    pub fn src_mac(&self) -> Option<[u8; 6]> {
        self.src_mac_address
            .as_deref()
            .and_then(|m| parse_mac(m).ok())
    }

    /// The next-hop IP address, if the interface names one.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.dst_ip_address.as_deref().and_then(|a| a.parse().ok())
    }
}

/// `TrafficFilter`: every member is optional; a packet matches when every present member does.
/// GTP-U TEIDs are read from v3's `tag` or v2's `token` and written under both names, so clients
/// of either version find what they sent (and may send back what they read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "TrafficFilterIn")]
pub struct TrafficFilter {
    pub src_address: Vec<String>,
    pub dst_address: Vec<String>,
    pub src_port: Vec<String>,
    pub dst_port: Vec<String>,
    pub protocol: Vec<String>,
    /// GTP-U TEIDs (v3 `tag`, v2 `token`).
    pub tag: Vec<String>,
    pub src_tunnel_address: Vec<String>,
    pub tgt_tunnel_address: Vec<String>,
    pub src_tunnel_port: Vec<String>,
    pub dst_tunnel_port: Vec<String>,
    pub qci: Option<u32>,
    pub dscp: Option<u32>,
    pub tc: Option<u32>,
}

/// `TrafficFilter` as it arrives, with `tag` and `token` apart; its schema is the one documented.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TrafficFilter))]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrafficFilterIn {
    #[serde(default)]
    src_address: Vec<String>,
    #[serde(default)]
    dst_address: Vec<String>,
    #[serde(default)]
    src_port: Vec<String>,
    #[serde(default)]
    dst_port: Vec<String>,
    #[serde(default)]
    protocol: Vec<String>,
    /// Since MEC 011 v3.1.1: GTP-U TEIDs, v2's `token` under its v3 name (both are written).
    #[serde(default)]
    tag: Option<Vec<String>>,
    #[serde(default)]
    token: Option<Vec<String>>,
    #[serde(default)]
    src_tunnel_address: Vec<String>,
    #[serde(default)]
    tgt_tunnel_address: Vec<String>,
    #[serde(default)]
    src_tunnel_port: Vec<String>,
    #[serde(default)]
    dst_tunnel_port: Vec<String>,
    #[serde(default, rename = "qCI")]
    qci: Option<u32>,
    #[serde(default, rename = "dSCP")]
    dscp: Option<u32>,
    #[serde(default, rename = "tC")]
    tc: Option<u32>,
}

impl TryFrom<TrafficFilterIn> for TrafficFilter {
    type Error = String;

    fn try_from(f: TrafficFilterIn) -> Result<Self, String> {
        let tag = match (f.tag, f.token) {
            (Some(tag), Some(token)) if tag != token => {
                return Err("tag and token (its v2 name) are both given and differ".into())
            }
            (Some(tag), _) | (None, Some(tag)) => tag,
            (None, None) => Vec::new(),
        };
        Ok(TrafficFilter {
            src_address: f.src_address,
            dst_address: f.dst_address,
            src_port: f.src_port,
            dst_port: f.dst_port,
            protocol: f.protocol,
            tag,
            src_tunnel_address: f.src_tunnel_address,
            tgt_tunnel_address: f.tgt_tunnel_address,
            src_tunnel_port: f.src_tunnel_port,
            dst_tunnel_port: f.dst_tunnel_port,
            qci: f.qci,
            dscp: f.dscp,
            tc: f.tc,
        })
    }
}

impl Serialize for TrafficFilter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn none(v: &[String]) -> bool {
            v.is_empty()
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "none")]
            src_address: &'a [String],
            #[serde(skip_serializing_if = "none")]
            dst_address: &'a [String],
            #[serde(skip_serializing_if = "none")]
            src_port: &'a [String],
            #[serde(skip_serializing_if = "none")]
            dst_port: &'a [String],
            #[serde(skip_serializing_if = "none")]
            protocol: &'a [String],
            #[serde(skip_serializing_if = "none")]
            tag: &'a [String],
            #[serde(skip_serializing_if = "none")]
            token: &'a [String],
            #[serde(skip_serializing_if = "none")]
            src_tunnel_address: &'a [String],
            #[serde(skip_serializing_if = "none")]
            tgt_tunnel_address: &'a [String],
            #[serde(skip_serializing_if = "none")]
            src_tunnel_port: &'a [String],
            #[serde(skip_serializing_if = "none")]
            dst_tunnel_port: &'a [String],
            #[serde(rename = "qCI", skip_serializing_if = "Option::is_none")]
            qci: Option<u32>,
            #[serde(rename = "dSCP", skip_serializing_if = "Option::is_none")]
            dscp: Option<u32>,
            #[serde(rename = "tC", skip_serializing_if = "Option::is_none")]
            tc: Option<u32>,
        }
        Wire {
            src_address: &self.src_address,
            dst_address: &self.dst_address,
            src_port: &self.src_port,
            dst_port: &self.dst_port,
            protocol: &self.protocol,
            tag: &self.tag,
            token: &self.tag,
            src_tunnel_address: &self.src_tunnel_address,
            tgt_tunnel_address: &self.tgt_tunnel_address,
            src_tunnel_port: &self.src_tunnel_port,
            dst_tunnel_port: &self.dst_tunnel_port,
            qci: self.qci,
            dscp: self.dscp,
            tc: self.tc,
        }
        .serialize(serializer)
    }
}

/// `TrafficRule`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrafficRule {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._~-]{1,63}$"))]
    pub traffic_rule_id: String,
    pub filter_type: FilterType,
    /// 0..=255, 0 is the highest priority.
    pub priority: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<TrafficFilterIn>))]
    pub traffic_filter: Vec<TrafficFilter>,
    pub action: Action,
    /// 0..2 destinations. v2.1.1 models one object, v3 and EdgeGallery a list: both are read,
    /// a list is written.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<DestinationInterface>))]
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dst_interface: Vec<DestinationInterface>,
    #[serde(default)]
    pub state: RuleState,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DestinationInterface>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Box<DestinationInterface>),
        Many(Vec<DestinationInterface>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![*one],
        OneOrMany::Many(many) => many,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// An IP prefix (`addr/len`); a plain address is a full-length prefix.
pub type IpPrefix = ipnet::IpNet;

/// An inclusive port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

/// A `TrafficFilter` with every member parsed and checked. Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CompiledFilter {
    pub src_address: Vec<IpPrefix>,
    pub dst_address: Vec<IpPrefix>,
    pub src_port: Vec<PortRange>,
    pub dst_port: Vec<PortRange>,
    /// IANA protocol numbers.
    pub protocol: Vec<u8>,
    /// GTP-U TEIDs.
    pub tag: Vec<u32>,
    pub src_tunnel_address: Vec<IpPrefix>,
    pub tgt_tunnel_address: Vec<IpPrefix>,
    pub src_tunnel_port: Vec<PortRange>,
    pub dst_tunnel_port: Vec<PortRange>,
    pub qci: Option<u8>,
    /// 0..=63.
    pub dscp: Option<u8>,
    /// IPv6 traffic class, 0..=255.
    pub tc: Option<u8>,
    /// Members that are valid MEC 011 (free strings) but name no IP protocol number or GTP-U
    /// TEID, such as protocol `"HTTP"` or a tag `"premium"`: stored and forwarded as sent, and
    /// left for each data plane to honour or refuse (`protocol "HTTP"`, `tag "premium"`).
    pub uninterpreted: Vec<String>,
}

impl CompiledFilter {
    /// Whether the filter looks at GTP-U tunnel fields (and so applies to tunnelled traffic).
    pub fn uses_tunnel(&self) -> bool {
        !self.tag.is_empty()
            || !self.src_tunnel_address.is_empty()
            || !self.tgt_tunnel_address.is_empty()
            || !self.src_tunnel_port.is_empty()
            || !self.dst_tunnel_port.is_empty()
    }
}

/// Longest rule id accepted.
const MAX_RULE_ID: usize = 63;

pub(crate) fn validate_rule_id(what: &str, id: &str) -> Result<(), RuleError> {
    if id.is_empty() || id.len() > MAX_RULE_ID {
        return Err(RuleError::new(format!(
            "{what} must be 1 to {MAX_RULE_ID} characters"
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err(RuleError::new(format!(
            "{what} may only contain letters, digits and '-', '_', '.', '~'"
        )));
    }
    Ok(())
}

impl TrafficRule {
    /// Checks the rule and parses every filter.
    pub fn compile(&self) -> Result<Vec<CompiledFilter>, RuleError> {
        validate_rule_id("trafficRuleId", &self.traffic_rule_id)?;
        if self.priority > 255 {
            return Err(RuleError::new("priority must be 0..255"));
        }
        if self.traffic_filter.is_empty() {
            return Err(RuleError::new("trafficFilter needs at least one filter"));
        }
        // A DROP rule has no destination; one that names some anyway (ETSI's own conformance
        // bodies do) is accepted and its dstInterface ignored.
        if self.action == Action::Drop {
            return self.traffic_filter.iter().map(compile_filter).collect();
        }
        let wanted = match self.action {
            Action::Drop => 0..=0,
            Action::Passthrough => 0..=1,
            // One destination; a second (as AdvantEDGE's v2.2.1 example sends) is ignored.
            Action::ForwardDecapsulated | Action::ForwardEncapsulated => 1..=2,
            Action::DuplicateDecapsulated | Action::DuplicateEncapsulated => 1..=2,
        };
        if !wanted.contains(&self.dst_interface.len()) {
            let action = serde_json::to_value(self.action).unwrap_or_default();
            return Err(RuleError::new(format!(
                "action {} takes {} to {} dstInterface values, not {}",
                action.as_str().unwrap_or("?"),
                wanted.start(),
                wanted.end(),
                self.dst_interface.len()
            )));
        }
        for d in &self.dst_interface {
            d.validate()?;
        }
        self.traffic_filter.iter().map(compile_filter).collect()
    }
}

fn compile_filter(f: &TrafficFilter) -> Result<CompiledFilter, RuleError> {
    let prefixes = |what: &str, v: &[String]| -> Result<Vec<IpPrefix>, RuleError> {
        let mut out = Vec::new();
        for s in v {
            out.extend(parse_address(what, s)?);
        }
        Ok(out)
    };
    let ports = |what: &str, v: &[String]| -> Result<Vec<PortRange>, RuleError> {
        v.iter().map(|s| parse_port_range(what, s)).collect()
    };
    let small = |what: &str, v: Option<u32>, max: u32| -> Result<Option<u8>, RuleError> {
        match v {
            Some(x) if x > max => Err(RuleError::new(format!("{what} must be 0..{max}"))),
            Some(x) => Ok(Some(x as u8)),
            None => Ok(None),
        }
    };
    let mut uninterpreted = Vec::new();
    let mut protocol = Vec::new();
    for p in &f.protocol {
        require_member("protocol", p)?;
        match parse_protocol(p) {
            Some(number) => protocol.push(number),
            None => uninterpreted.push(format!("protocol {p:?}")),
        }
    }
    let mut tag = Vec::new();
    for t in &f.tag {
        require_member("tag", t)?;
        match parse_teid(t) {
            Some(teid) => tag.push(teid),
            None => uninterpreted.push(format!("tag {t:?}")),
        }
    }
    Ok(CompiledFilter {
        src_address: prefixes("srcAddress", &f.src_address)?,
        dst_address: prefixes("dstAddress", &f.dst_address)?,
        src_port: ports("srcPort", &f.src_port)?,
        dst_port: ports("dstPort", &f.dst_port)?,
        protocol,
        tag,
        src_tunnel_address: prefixes("srcTunnelAddress", &f.src_tunnel_address)?,
        tgt_tunnel_address: prefixes("tgtTunnelAddress", &f.tgt_tunnel_address)?,
        src_tunnel_port: ports("srcTunnelPort", &f.src_tunnel_port)?,
        dst_tunnel_port: ports("dstTunnelPort", &f.dst_tunnel_port)?,
        qci: small("qCI", f.qci, 255)?,
        dscp: small("dSCP", f.dscp, 63)?,
        tc: small("tC", f.tc, 255)?,
        uninterpreted,
    })
}

/// Longest free-string filter member (`protocol`, `tag`) accepted.
const MAX_MEMBER: usize = 255;

fn require_member(what: &str, value: &str) -> Result<(), RuleError> {
    if value.trim().is_empty() || value.len() > MAX_MEMBER {
        return Err(RuleError::new(format!(
            "{what} entries must be 1 to {MAX_MEMBER} characters"
        )));
    }
    Ok(())
}

fn parse_ip(what: &str, s: &str) -> Result<IpAddr, RuleError> {
    s.trim()
        .parse()
        .map_err(|_| RuleError::new(format!("{what}: {s:?} is not an IP address")))
}

/// An address, `addr/len`, `addr/dotted-mask` or a range `first-last` (turned into prefixes).
fn parse_address(what: &str, s: &str) -> Result<Vec<IpPrefix>, RuleError> {
    let s = s.trim();
    if let Some((first, last)) = s.split_once('-') {
        let (first, last) = (parse_ip(what, first)?, parse_ip(what, last)?);
        return range_to_prefixes(first, last)
            .ok_or_else(|| RuleError::new(format!("{what}: {s:?} is not an address range")));
    }
    let Some((addr, len)) = s.split_once('/') else {
        return Ok(vec![IpPrefix::from(parse_ip(what, s)?)]);
    };
    let addr = parse_ip(what, addr)?;
    let len = match (
        len.trim().parse::<u8>(),
        addr,
        len.trim().parse::<Ipv4Addr>(),
    ) {
        (Ok(len), _, _) => len,
        (_, IpAddr::V4(_), Ok(mask)) => ipnet::ipv4_mask_to_prefix(mask)
            .map_err(|_| RuleError::new(format!("{what}: {s:?} has a non-contiguous mask")))?,
        _ => {
            return Err(RuleError::new(format!(
                "{what}: {s:?} has a bad prefix length"
            )))
        }
    };
    IpPrefix::new(addr, len).map(|net| vec![net]).map_err(|_| {
        RuleError::new(format!(
            "{what}: {s:?} has a prefix longer than the address"
        ))
    })
}

/// Most prefixes one range may turn into (a worst-case IPv6 range needs 254).
const MAX_RANGE_PREFIXES: usize = 256;

/// The smallest set of prefixes covering `first..=last` (same family, first <= last).
fn range_to_prefixes(first: IpAddr, last: IpAddr) -> Option<Vec<IpPrefix>> {
    if first > last {
        return None;
    }
    let out: Vec<IpPrefix> = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => ipnet::Ipv4Subnets::new(a, b, 0)
            .take(MAX_RANGE_PREFIXES + 1)
            .map(IpPrefix::V4)
            .collect(),
        (IpAddr::V6(a), IpAddr::V6(b)) => ipnet::Ipv6Subnets::new(a, b, 0)
            .take(MAX_RANGE_PREFIXES + 1)
            .map(IpPrefix::V6)
            .collect(),
        _ => return None,
    };
    (out.len() <= MAX_RANGE_PREFIXES).then_some(out)
}

fn parse_port_range(what: &str, s: &str) -> Result<PortRange, RuleError> {
    let bad = || RuleError::new(format!("{what}: {s:?} is not a port or port range"));
    let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok(PortRange { start, end })
}

/// The IANA protocol number a `protocol` member names (a known name or a number), if any.
fn parse_protocol(s: &str) -> Option<u8> {
    let number = match s.trim().to_ascii_uppercase().as_str() {
        "ICMP" => 1,
        "TCP" => 6,
        "UDP" => 17,
        "GRE" => 47,
        "ESP" => 50,
        "ICMPV6" => 58,
        "SCTP" => 132,
        other => return other.parse::<u8>().ok(),
    };
    Some(number)
}

/// The GTP-U TEID a `tag` member names (decimal or `0x` hex), if any.
fn parse_teid(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], RuleError> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || RuleError::new(format!("{s:?} is not a MAC address"));
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> TrafficRule {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "trafficRuleId": "tr1", "filterType": "FLOW", "priority": 1, "action": "DROP",
            "state": "ACTIVE",
            "trafficFilter": [{"srcAddress": ["10.0.0.0/24", "192.168.1.1"], "dstPort": ["80", "8000-8080"],
                               "protocol": ["TCP", "17"], "tag": ["0x10"], "dSCP": 46}]
        })
    }

    #[test]
    fn filters_compile() {
        let c = rule(base()).compile().unwrap();
        let f = &c[0];
        assert_eq!(f.src_address.len(), 2);
        assert!(f.src_address[0].contains(&"10.0.0.200".parse::<IpAddr>().unwrap()));
        assert!(!f.src_address[0].contains(&"10.0.1.1".parse::<IpAddr>().unwrap()));
        assert_eq!(
            f.dst_port[1],
            PortRange {
                start: 8000,
                end: 8080
            }
        );
        assert_eq!(f.protocol, vec![6, 17]);
        assert_eq!(f.tag, vec![16]);
        assert_eq!(f.dscp, Some(46));
        assert!(f.uses_tunnel());
    }

    #[test]
    fn masks_and_ranges() {
        let p = parse_address("a", "10.1.0.0/255.255.0.0").unwrap();
        assert_eq!(p, vec!["10.1.0.0/16".parse::<IpPrefix>().unwrap()]);
        assert!(parse_address("a", "10.1.0.0/255.0.255.0").is_err());
        let r = parse_address("a", "10.0.0.1-10.0.0.6").unwrap();
        let lens: Vec<u8> = r.iter().map(|p| p.prefix_len()).collect();
        assert_eq!(lens, vec![32, 31, 31, 32]); // .1, .2-.3, .4-.5, .6
        for i in 1..=6 {
            let ip: IpAddr = format!("10.0.0.{i}").parse().unwrap();
            assert!(r.iter().any(|p| p.contains(&ip)));
        }
        assert!(!r
            .iter()
            .any(|p| p.contains(&"10.0.0.7".parse::<IpAddr>().unwrap())));
        let v6 = parse_address("a", "2001:db8::/32").unwrap();
        assert!(v6[0].contains(&"2001:db8:1::1".parse::<IpAddr>().unwrap()));
        assert!(parse_address("a", "10.0.0.0/33").is_err());
        assert!(parse_address("a", "nonsense").is_err());
        assert!(parse_address("a", "0.0.0.0-255.255.255.255").unwrap()[0].prefix_len() == 0);
        let widest = parse_address("a", "::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe").unwrap();
        assert_eq!(widest.len(), 254);
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut r = base();
        r["priority"] = 256.into();
        assert!(rule(r).compile().is_err());
        let mut r = base();
        r["trafficFilter"][0]["dstPort"] = serde_json::json!(["9-1"]);
        assert!(rule(r).compile().is_err());
        let mut r = base();
        r["trafficFilter"][0]["protocol"] = serde_json::json!([""]);
        assert!(rule(r).compile().is_err());
        let mut r = base();
        r["action"] = "FORWARD_DECAPSULATED".into();
        assert!(rule(r.clone())
            .compile()
            .unwrap_err()
            .0
            .contains("dstInterface"));
        r["dstInterface"] =
            serde_json::json!({"interfaceType": "MAC", "dstMacAddress": "02:00:00:00:00:01"});
        assert!(rule(r.clone()).compile().is_ok());
        r["dstInterface"] = serde_json::json!([{"interfaceType": "MAC", "dstMacAddress": "zz"}]);
        assert!(rule(r).compile().is_err());
        let mut r = base();
        r["trafficFilter"] = serde_json::json!([]);
        assert!(rule(r).compile().is_err());
    }

    #[test]
    fn free_string_members_are_kept_for_the_data_plane_to_judge() {
        let mut r = base();
        r["trafficFilter"][0]["protocol"] = serde_json::json!(["TCP", "HTTP"]);
        r["trafficFilter"][0]["tag"] = serde_json::json!(["7", "premium"]);
        let f = &rule(r).compile().unwrap()[0];
        assert_eq!(f.protocol, vec![6]);
        assert_eq!(f.tag, vec![7]);
        assert_eq!(
            f.uninterpreted,
            vec!["protocol \"HTTP\"", "tag \"premium\""]
        );
    }

    #[test]
    fn drop_ignores_a_destination() {
        let mut r = base();
        r["dstInterface"] = serde_json::json!({"interfaceType": "TUNNEL",
            "tunnelInfo": {"tunnelType": "GTP_U", "tunnelDstAddress": "192.0.2.1"}});
        let parsed = rule(r);
        assert!(parsed.compile().is_ok());
        assert_eq!(parsed.dst_interface.len(), 1, "kept as sent");
    }

    #[test]
    fn aliases_are_read_and_spec_names_written() {
        let mut r = base();
        r["action"] = "FORWARD_AS_IS".into();
        r["dstInterface"] =
            serde_json::json!([{"interfaceType": "IP", "dstIpAddress": "10.9.9.9"}]);
        r["trafficFilter"] = serde_json::json!([{"token": ["7"]}]);
        let parsed = rule(r);
        assert_eq!(parsed.action, Action::ForwardEncapsulated);
        assert_eq!(parsed.traffic_filter[0].tag, vec!["7".to_string()]);
        let back = serde_json::to_value(&parsed).unwrap();
        assert_eq!(back["action"], "FORWARD_ENCAPSULATED");
        assert_eq!(back["trafficFilter"][0]["tag"][0], "7");
        assert_eq!(
            back["trafficFilter"][0]["token"][0], "7",
            "v2 clients find token"
        );
        let again: TrafficRule = serde_json::from_value(back.clone()).unwrap();
        assert_eq!(again, parsed, "what mep writes it reads back the same");
        assert_eq!(back["dstInterface"][0]["dstIpAddress"], "10.9.9.9");
        let mut differing = back;
        differing["trafficFilter"][0]["token"] = serde_json::json!(["8"]);
        assert!(serde_json::from_value::<TrafficRule>(differing).is_err());
    }
}
