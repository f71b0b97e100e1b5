//! Parsing an incoming query at the edge: the header, exactly one question and the EDNS OPT
//! record. Whatever does not parse becomes a [`Rejection`] that says how to answer it.

use crate::wire::{
    self, rcode, record_at, u16_at, ARCOUNT_AT, CLASSIC_UDP_PAYLOAD, FLAG_CD, FLAG_QR, HEADER_LEN,
    MAX_NAME_LEN, OPCODE_MASK, OPT_FLAG_DO, QDCOUNT_AT, TYPE_AXFR, TYPE_IXFR, TYPE_OPT,
};

/// Longest cache key: the wire name, QTYPE, QCLASS and the DNSSEC flags byte.
const MAX_KEY_LEN: usize = MAX_NAME_LEN + 5;

/// EDNS options that concern one hop only (RFC 7873 cookies, RFC 7828 keepalive, RFC 7830
/// padding): not passed upstream.
const HOP_BY_HOP_OPTIONS: [u16; 3] = [10, 11, 12];

/// What the client said about EDNS (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edns {
    /// The client's UDP payload size; values below 512 count as 512.
    pub(crate) udp_payload: u16,
    /// The DO bit: the client wants DNSSEC records (echoed in every response).
    pub(crate) dnssec_ok: bool,
}

/// What every response echoes from its query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyTo<'a> {
    pub(crate) id: u16,
    pub(crate) request_flags: u16,
    /// QNAME, QTYPE and QCLASS exactly as the client sent them (case preserved).
    pub(crate) question: Option<&'a [u8]>,
    pub(crate) edns: Option<Edns>,
}

impl ReplyTo<'_> {
    /// The largest response the client takes over UDP: its EDNS size capped by ours, or 512.
    pub(crate) fn udp_limit(&self, our_payload: u16) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_payload.min(our_payload)).max(CLASSIC_UDP_PAYLOAD),
            None => CLASSIC_UDP_PAYLOAD,
        }
    }
}

/// A well-formed standard query with one question.
#[derive(Debug)]
pub(crate) struct Query<'a> {
    pub(crate) reply: ReplyTo<'a>,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    /// The options of the client's OPT record, as sent.
    pub(crate) edns_options: &'a [u8],
    /// The lower-case wire name, QTYPE, QCLASS and the DO and CD bits: the cache key.
    key: [u8; MAX_KEY_LEN],
    name_len: usize,
}

/// How to deal with a packet that is not a query we answer normally.
#[derive(Debug)]
pub(crate) enum Rejection<'a> {
    /// Too short to carry a header, or itself a response: answering could start a loop.
    Drop,
    /// Answer with this (possibly extended) RCODE.
    Reply { reply: ReplyTo<'a>, rcode: u16 },
}

impl<'a> Query<'a> {
    pub(crate) fn parse(packet: &'a [u8]) -> Result<Self, Rejection<'a>> {
        let (Some(id), Some(flags)) = (u16_at(packet, 0), u16_at(packet, 2)) else {
            return Err(Rejection::Drop);
        };
        if packet.len() < HEADER_LEN || flags & FLAG_QR != 0 {
            return Err(Rejection::Drop);
        }
        let mut reply = ReplyTo {
            id,
            request_flags: flags,
            question: None,
            edns: None,
        };
        let refuse = |reply, rcode| Err(Rejection::Reply { reply, rcode });
        if flags & OPCODE_MASK != 0 {
            return refuse(reply, rcode::NOTIMP);
        }
        if u16_at(packet, QDCOUNT_AT) != Some(1) {
            return refuse(reply, rcode::FORMERR);
        }
        let mut key = [0u8; MAX_KEY_LEN];
        let Some(name_end) = lowercase_name(packet, &mut key) else {
            return refuse(reply, rcode::FORMERR);
        };
        let question_end = name_end + 4;
        let (Some(qtype), Some(qclass)) = (u16_at(packet, name_end), u16_at(packet, name_end + 2))
        else {
            return refuse(reply, rcode::FORMERR);
        };
        let name_len = name_end - HEADER_LEN;
        key[name_len..name_len + 4].copy_from_slice(&packet[name_end..question_end]);
        reply.question = Some(&packet[HEADER_LEN..question_end]);
        let mut edns_options: &[u8] = &[];
        match find_edns(packet, question_end) {
            Ok(Some((edns, options))) => {
                reply.edns = Some(edns);
                edns_options = options;
            }
            Ok(None) => {}
            Err(EdnsProblem::Malformed) => return refuse(reply, rcode::FORMERR),
            Err(EdnsProblem::UnknownVersion { dnssec_ok }) => {
                reply.edns = Some(Edns {
                    udp_payload: 512,
                    dnssec_ok,
                });
                return refuse(reply, rcode::BADVERS);
            }
        }
        let dnssec_ok = reply.edns.is_some_and(|e| e.dnssec_ok);
        key[name_len + 4] = u8::from(dnssec_ok) | u8::from(flags & FLAG_CD != 0) << 1;
        match qtype {
            TYPE_OPT => refuse(reply, rcode::FORMERR),
            TYPE_AXFR | TYPE_IXFR => refuse(reply, rcode::REFUSED),
            _ => Ok(Query {
                reply,
                qtype,
                qclass,
                edns_options,
                key,
                name_len,
            }),
        }
    }

    /// The lower-case wire name with QTYPE, QCLASS and the DO and CD bits, which identifies a
    /// forwarded answer (one asked with DO carries signatures, one with CD may be unvalidated).
    pub(crate) fn cache_key(&self) -> &[u8] {
        &self.key[..self.name_len + 5]
    }

    /// The lower-case wire name of the question.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn wire_name(&self) -> &[u8] {
        &self.key[..self.name_len]
    }

    /// Calls `f` with each of the client's EDNS options (in wire form) that is not hop-by-hop,
    /// without allocating; None when the options are malformed.
    pub(crate) fn for_each_forwardable_option(&self, mut f: impl FnMut(&'a [u8])) -> Option<()> {
        let mut rest = self.edns_options;
        while !rest.is_empty() {
            let code = u16_at(rest, 0)?;
            let len = usize::from(u16_at(rest, 2)?);
            let option = rest.get(..4 + len)?;
            if !HOP_BY_HOP_OPTIONS.contains(&code) {
                f(option);
            }
            rest = &rest[4 + len..];
        }
        Some(())
    }

    /// The name as DNS rules spell it (lower case, dots, no trailing dot), written into `buf`;
    /// `None` when no rule could cover it: the root, or a label with a byte that rule names
    /// never hold (a dot inside a label would otherwise alias two labels).
    pub(crate) fn rule_name<'b>(&self, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b str> {
        let wire = &self.key[..self.name_len];
        let mut pos = 0;
        let mut len = 0;
        while let Some(&label_len) = wire.get(pos) {
            let label_len = usize::from(label_len);
            if label_len == 0 {
                break;
            }
            let label = wire.get(pos + 1..pos + 1 + label_len)?;
            if !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            {
                return None;
            }
            if len > 0 {
                buf[len] = b'.';
                len += 1;
            }
            buf[len..len + label_len].copy_from_slice(label);
            len += label_len;
            pos += 1 + label_len;
        }
        if len == 0 {
            return None;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }
}

/// Copies the uncompressed QNAME at the start of the question, lower-cased, into `out`; returns
/// the offset just after it. A compression pointer in the question is malformed: it could only
/// point into the header.
fn lowercase_name(packet: &[u8], out: &mut [u8; MAX_KEY_LEN]) -> Option<usize> {
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*packet.get(pos)?);
        if len & 0xC0 != 0 {
            return None;
        }
        let written = pos - HEADER_LEN;
        if written + 1 + len > MAX_NAME_LEN {
            return None;
        }
        let label = packet.get(pos..pos + 1 + len)?;
        for (o, b) in out[written..written + 1 + len].iter_mut().zip(label) {
            *o = b.to_ascii_lowercase();
        }
        // The length byte is below 64, so lower-casing never changed it.
        pos += 1 + len;
        if len == 0 {
            return Some(pos);
        }
    }
}

enum EdnsProblem {
    Malformed,
    UnknownVersion { dnssec_ok: bool },
}

/// Walks the records after the question and returns the EDNS parameters and options of the OPT
/// record, if any. More than one OPT, or an OPT not owned by the root, is malformed (RFC 6891
/// §6.1.1).
fn find_edns(packet: &[u8], mut pos: usize) -> Result<Option<(Edns, &[u8])>, EdnsProblem> {
    let counts = [
        u16_at(packet, wire::ANCOUNT_AT),
        u16_at(packet, wire::NSCOUNT_AT),
        u16_at(packet, ARCOUNT_AT),
    ];
    let [Some(an), Some(ns), Some(ar)] = counts else {
        return Err(EdnsProblem::Malformed);
    };
    let mut edns = None;
    for index in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let record = record_at(packet, pos).ok_or(EdnsProblem::Malformed)?;
        let in_additional = index >= u32::from(an) + u32::from(ns);
        if record.rtype == TYPE_OPT {
            if !in_additional || edns.is_some() || packet[record.start] != 0 {
                return Err(EdnsProblem::Malformed);
            }
            let udp_payload = u16_at(packet, record.fixed + 2).ok_or(EdnsProblem::Malformed)?;
            let version = packet[record.ttl_at() + 1];
            let flags = u16_at(packet, record.ttl_at() + 2).ok_or(EdnsProblem::Malformed)?;
            let dnssec_ok = flags & OPT_FLAG_DO != 0;
            if version != 0 {
                return Err(EdnsProblem::UnknownVersion { dnssec_ok });
            }
            let edns_found = Edns {
                udp_payload,
                dnssec_ok,
            };
            edns = Some((edns_found, &packet[record.rdata..record.end]));
        }
        pos = record.end;
    }
    Ok(edns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{push_header, push_opt, TYPE_A, TYPE_AAAA};

    fn query(name: &[u8], qtype: u16, opt: Option<(u16, u8)>) -> Vec<u8> {
        let mut m = Vec::new();
        push_header(&mut m, 0x1234, 0x0100, [1, 0, 0, u16::from(opt.is_some())]);
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        if let Some((size, version)) = opt {
            push_opt(&mut m, size, 0);
            let at = m.len() - 5;
            m[at] = version;
        }
        m
    }

    #[test]
    fn parses_name_type_and_edns() {
        let m = query(b"\x04Edge\x07EXAMPLE\x00", TYPE_AAAA, Some((4096, 0)));
        let q = Query::parse(&m).unwrap();
        assert_eq!(q.reply.id, 0x1234);
        assert_eq!(q.qtype, TYPE_AAAA);
        assert_eq!(
            q.reply.edns,
            Some(Edns {
                udp_payload: 4096,
                dnssec_ok: false
            })
        );
        assert_eq!(q.reply.question.unwrap(), &m[12..m.len() - 11]);
        assert_eq!(&q.cache_key()[..14], b"\x04edge\x07example\x00");
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(q.rule_name(&mut buf), Some("edge.example"));
        assert_eq!(q.reply.udp_limit(1232), 1232);
    }

    #[test]
    fn names_no_rule_can_cover() {
        let mut buf = [0u8; MAX_NAME_LEN];
        for name in [
            &b"\x00"[..],
            b"\x03a.b\x00",
            b"\x02a_\x00",
            b"\x02\xc3\xa9\x00",
        ] {
            let m = query(name, TYPE_A, None);
            let q = Query::parse(&m).unwrap();
            assert_eq!(q.rule_name(&mut buf), None, "{name:?}");
            assert_eq!(q.reply.udp_limit(1232), 512);
        }
    }

    fn rcode_of(m: &[u8]) -> Option<u16> {
        match Query::parse(m) {
            Ok(_) => None,
            Err(Rejection::Drop) => Some(u16::MAX),
            Err(Rejection::Reply { rcode, .. }) => Some(rcode),
        }
    }

    #[test]
    fn rejects_malformed_queries() {
        let good = query(b"\x01a\x00", TYPE_A, Some((1232, 0)));
        assert_eq!(rcode_of(&good), None);
        assert_eq!(rcode_of(&good[..5]), Some(u16::MAX));
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(rcode_of(&response), Some(u16::MAX));
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert_eq!(rcode_of(&notify), Some(rcode::NOTIMP));
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        assert_eq!(rcode_of(&two_questions), Some(rcode::FORMERR));
        assert_eq!(rcode_of(&good[..15]), Some(rcode::FORMERR));
        assert_eq!(rcode_of(&good[..good.len() - 3]), Some(rcode::FORMERR));
        let compressed = query(b"\xC0\x0C", TYPE_A, None);
        assert_eq!(rcode_of(&compressed), Some(rcode::FORMERR));
        let mut two_opts = good.clone();
        two_opts[11] = 2;
        two_opts.extend_from_slice(&good[good.len() - 11..]);
        assert_eq!(rcode_of(&two_opts), Some(rcode::FORMERR));
        assert_eq!(
            rcode_of(&query(b"\x01a\x00", TYPE_A, Some((1232, 1)))),
            Some(rcode::BADVERS)
        );
        assert_eq!(
            rcode_of(&query(b"\x01a\x00", TYPE_AXFR, None)),
            Some(rcode::REFUSED)
        );
        assert_eq!(
            rcode_of(&query(b"\x01a\x00", TYPE_OPT, None)),
            Some(rcode::FORMERR)
        );
    }
}
