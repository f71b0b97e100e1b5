//! The operator's allow-list of notification callback destinations (`callback_allow`).
//!
//! mep only ever sends notifications to callbacks; it relays no request to a URL a caller chooses.
//! When the list is empty every http(s) callback is accepted; otherwise the callback's host must be
//! an IP address inside one of the listed networks, or a host name listed exactly or matched by a
//! `*.domain` entry. Host names are not resolved: a name is allowed by name only.

use std::net::IpAddr;

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Network { addr: IpAddr, prefix: u8 },
    Host(String),
    DomainSuffix(String),
}

/// The parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    rules: Vec<Rule>,
}

impl CallbackPolicy {
    /// Parses entries such as `10.0.0.0/8`, `192.0.2.7`, `fd00::/8`, `notify.example.com` and
    /// `*.apps.example.com`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// Accepts `callback` when the list allows its host; the error is a 400 detail.
    pub fn check(&self, callback: &str) -> Result<(), String> {
        if self.is_open() {
            return Ok(());
        }
        let url = url::Url::parse(callback).map_err(|e| format!("callbackReference: {e}"))?;
        let allowed = match url.host() {
            Some(url::Host::Ipv4(v4)) => self.allows_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => {
                self.allows_ip(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            Some(url::Host::Domain(name)) => self.allows_name(&name.to_ascii_lowercase()),
            None => false,
        };
        if allowed {
            Ok(())
        } else {
            Err("callbackReference is not in the operator's callback allow-list".into())
        }
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.rules.iter().any(|rule| match rule {
            Rule::Network { addr, prefix } => in_network(ip, *addr, *prefix),
            _ => false,
        })
    }

    fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.rules.iter().any(|rule| match rule {
            Rule::Host(host) => host == name,
            Rule::DomainSuffix(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            Rule::Network { .. } => false,
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let bad = || format!("callback_allow entry {entry:?} is not a network, address or host name");
    if entry.is_empty() {
        return Err(bad());
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        return Ok(Rule::Network { addr, prefix });
    }
    if let Ok(addr) = entry
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(Rule::Network { addr, prefix });
    }
    let lower = entry.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, lower),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(bad());
    }
    Ok(if wildcard {
        Rule::DomainSuffix(name)
    } else {
        Rule::Host(name)
    })
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_allows_everything() {
        let p = CallbackPolicy::default();
        assert!(p.check("http://198.51.100.1/x").is_ok());
    }

    #[test]
    fn networks_hosts_and_wildcards() {
        let p = CallbackPolicy::parse(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "fd00::/8",
            "notify.example.com",
            "*.apps.example.com",
        ])
        .unwrap();
        for ok in [
            "http://10.1.2.3:9000/n",
            "https://192.0.2.7/n",
            "http://[fd12::1]/n",
            "http://[::ffff:10.0.0.1]/n",
            "http://Notify.Example.com/n",
            "http://a.apps.example.com/n",
        ] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://11.0.0.1/n",
            "http://192.0.2.8/n",
            "http://[fe80::1]/n",
            "http://example.com/n",
            "http://apps.example.com/n",
            "http://evilapps.example.com/n",
            "http://notify.example.com.evil.net/n",
        ] {
            assert!(p.check(refused).is_err(), "{refused}");
        }
        assert!(CallbackPolicy::parse(&["10.0.0.0/33"]).is_err());
        assert!(CallbackPolicy::parse(&["bad host!"]).is_err());
        assert!(CallbackPolicy::parse(&[""]).is_err());
        let zero = CallbackPolicy::parse(&["0.0.0.0/0"]).unwrap();
        assert!(zero.check("http://203.0.113.9/").is_ok());
    }
}
