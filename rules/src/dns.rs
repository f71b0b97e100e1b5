//! `DnsRule` (MEC 011 clause 7.1.2.4).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::traffic::RuleError;
use crate::RuleState;

/// `ipAddressType`. EdgeGallery's spellings `IPv4`/`IPv6` are accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DnsRule::IpAddressType))]
pub enum IpAddressType {
    #[serde(rename = "IP_V4", alias = "IPv4")]
    IpV4,
    #[serde(rename = "IP_V6", alias = "IPv6")]
    IpV6,
}

/// A DNS rule: `domainName` resolves to `ipAddress` while the rule is ACTIVE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DnsRule {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._~-]{1,63}$"))]
    pub dns_rule_id: String,
    /// RFC 1123 host name syntax, at most 253 characters besides the optional trailing dot.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 254,
            pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
        )
    )]
    pub domain_name: String,
    pub ip_address_type: IpAddressType,
    pub ip_address: String,
    /// Seconds; absent means the answer does not expire (the DNS server then uses its own
    /// default TTL). 0 is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    pub state: RuleState,
}

/// What a DNS rule answers, in the form the DNS server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsAnswer {
    pub address: IpAddr,
    pub ttl: Option<u32>,
}

impl DnsRule {
    /// An ACTIVE rule that answers `domain_name` with `address`, whose family gives
    /// `ipAddressType`.
    pub fn active(
        id: impl Into<String>,
        domain_name: impl Into<String>,
        address: IpAddr,
        ttl: Option<u32>,
    ) -> Self {
        DnsRule {
            dns_rule_id: id.into(),
            domain_name: domain_name.into(),
            ip_address_type: match address {
                IpAddr::V4(_) => IpAddressType::IpV4,
                IpAddr::V6(_) => IpAddressType::IpV6,
            },
            ip_address: address.to_string(),
            ttl,
            state: RuleState::Active,
        }
    }

    /// Checks the id, the FQDN syntax, the address and that its family matches `ipAddressType`.
    pub fn validate(&self) -> Result<DnsAnswer, RuleError> {
        crate::traffic::validate_rule_id("dnsRuleId", &self.dns_rule_id)?;
        validate_domain_name(&self.domain_name)?;
        let address: IpAddr = self.ip_address.parse().map_err(|_| {
            RuleError::new(format!(
                "ipAddress {:?} is not an IP address",
                self.ip_address
            ))
        })?;
        match (self.ip_address_type, address) {
            (IpAddressType::IpV4, IpAddr::V4(_)) | (IpAddressType::IpV6, IpAddr::V6(_)) => {}
            _ => {
                return Err(RuleError::new(format!(
                    "ipAddress {address} does not match ipAddressType {:?}",
                    self.ip_address_type
                )))
            }
        }
        if address.is_unspecified() || address.is_multicast() {
            return Err(RuleError::new(format!(
                "ipAddress {address} is not a unicast address"
            )));
        }
        Ok(DnsAnswer {
            address,
            ttl: self.ttl,
        })
    }

    /// The domain name as the DNS server looks it up: lower case, without the trailing dot.
    pub fn lookup_key(&self) -> String {
        normalize_name(&self.domain_name)
    }
}

/// Lower case without a trailing dot: the key of local DNS answers.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// RFC 1035/1123 host name syntax: labels of 1..63 letters, digits and inner hyphens (a leading
/// `*` label and underscores are refused), 253 characters at most, an optional trailing dot.
fn validate_domain_name(name: &str) -> Result<(), RuleError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let bad = |why: &str| RuleError::new(format!("domainName {name:?} is not a valid FQDN: {why}"));
    if bare.is_empty() || bare.len() > 253 {
        return Err(bad("it must be 1 to 253 characters"));
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("labels may hold only letters, digits and '-'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("labels may not begin or end with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, kind: IpAddressType, ip: &str) -> DnsRule {
        DnsRule {
            dns_rule_id: "r1".into(),
            domain_name: name.into(),
            ip_address_type: kind,
            ip_address: ip.into(),
            ttl: Some(0),
            state: RuleState::Active,
        }
    }

    #[test]
    fn active_rules_take_their_type_from_the_address() {
        for (ip, kind) in [
            ("192.0.2.1", IpAddressType::IpV4),
            ("2001:db8::1", IpAddressType::IpV6),
        ] {
            let r = DnsRule::active("r1", "a.example", ip.parse().unwrap(), None);
            assert_eq!((r.ip_address_type, r.ip_address.as_str()), (kind, ip));
            assert_eq!(r.state, RuleState::Active);
            assert!(r.validate().is_ok());
        }
    }

    #[test]
    fn valid_rules() {
        assert!(rule("www.Example.com", IpAddressType::IpV4, "192.0.2.1")
            .validate()
            .is_ok());
        assert!(rule("edge.example.", IpAddressType::IpV6, "2001:db8::1")
            .validate()
            .is_ok());
        assert_eq!(
            rule("WWW.Example.com.", IpAddressType::IpV4, "192.0.2.1").lookup_key(),
            "www.example.com"
        );
    }

    #[test]
    fn invalid_rules() {
        assert!(rule("www.example.com", IpAddressType::IpV6, "192.0.2.1")
            .validate()
            .is_err());
        assert!(rule("www.example.com", IpAddressType::IpV4, "2001:db8::1")
            .validate()
            .is_err());
        assert!(rule("bad_name.com", IpAddressType::IpV4, "192.0.2.1")
            .validate()
            .is_err());
        assert!(rule("a..b", IpAddressType::IpV4, "192.0.2.1")
            .validate()
            .is_err());
        assert!(rule("-a.b", IpAddressType::IpV4, "192.0.2.1")
            .validate()
            .is_err());
        assert!(rule(&"a".repeat(64), IpAddressType::IpV4, "192.0.2.1")
            .validate()
            .is_err());
        assert!(rule("a.b", IpAddressType::IpV4, "300.1.1.1")
            .validate()
            .is_err());
        assert!(rule("a.b", IpAddressType::IpV4, "0.0.0.0")
            .validate()
            .is_err());
    }

    #[test]
    fn edgegallery_type_spellings_are_accepted() {
        let r: DnsRule = serde_json::from_str(
            r#"{"dnsRuleId":"d","domainName":"a.b","ipAddressType":"IPv4","ipAddress":"192.0.2.9","state":"ACTIVE"}"#,
        )
        .unwrap();
        assert_eq!(r.ip_address_type, IpAddressType::IpV4);
        assert_eq!(serde_json::to_value(&r).unwrap()["ipAddressType"], "IP_V4");
        assert!(r.ttl.is_none());
    }
}
