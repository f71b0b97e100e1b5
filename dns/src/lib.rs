//! mep's built-in DNS server (on hickory-server): local answers from the ACTIVE DNS rules of the
//! newest rule snapshot, forwarding for everything else. Filled by the DNS issue.
