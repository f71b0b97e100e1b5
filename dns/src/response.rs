//! The responses the server writes itself: authoritative answers from DNS rules (NODATA with a
//! synthesized SOA included) and error responses. Both go straight into a reused buffer.

use std::net::IpAddr;

use mep_rules::DnsAnswer;

use crate::query::{Query, ReplyTo};
use crate::wire::{
    push_header, push_opt_with, put_u16, rcode, ANCOUNT_AT, ARCOUNT_AT, CLASS_IN, FLAG_AA, FLAG_CD,
    FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC, HEADER_LEN, NSCOUNT_AT, OPCODE_MASK, OPT_LEN, RR_FIXED_LEN,
    TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_SOA,
};

/// A compression pointer to the question name, which always sits right after the header.
const QNAME_POINTER: [u8; 2] = [0xC0, HEADER_LEN as u8];
/// RNAME of the synthesized SOA: `hostmaster.<qname>`.
const SOA_RNAME_LABEL: &[u8] = b"\x0ahostmaster";
/// SOA timers; only MINIMUM matters to caches (RFC 2308), the others describe no real zone.
const SOA_REFRESH: u32 = 3600;
const SOA_RETRY: u32 = 600;
const SOA_EXPIRE: u32 = 86_400;

/// The header flags of a response: QR and RA set, opcode, RD and CD echoed.
pub(crate) fn response_flags(request_flags: u16) -> u16 {
    FLAG_QR | FLAG_RA | (request_flags & (OPCODE_MASK | FLAG_RD | FLAG_CD))
}

/// What the local answers need besides the rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAnswerParams {
    /// TTL for rules that carry none.
    pub(crate) default_ttl: u32,
    /// SOA serial: the snapshot version, so it changes with every rule change.
    pub(crate) serial: u32,
    /// Our EDNS UDP payload size, announced in the OPT record.
    pub(crate) udp_payload: u16,
}

/// Writes the authoritative answer for a name that DNS rules cover, as if the name were its own
/// zone apex: the addresses of the asked family (both for ANY), the apex SOA for SOA, or NODATA
/// with that SOA. The SOA's MINIMUM is the shortest rule TTL so that caches do not hold the
/// negative answer longer than a positive one. Whole records that do not fit in `limit` are
/// left out and TC is set.
pub(crate) fn write_local(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    answers: &[DnsAnswer],
    params: LocalAnswerParams,
    limit: usize,
) {
    let reply = &query.reply;
    let question = reply.question.unwrap_or_default();
    push_header(
        out,
        reply.id,
        response_flags(reply.request_flags) | FLAG_AA,
        [1, 0, 0, 0],
    );
    out.extend_from_slice(question);
    let reserved = if reply.edns.is_some() { OPT_LEN } else { 0 };
    let minimum = || shortest_ttl(answers.iter(), params.default_ttl);
    let (count, truncated) = if query.qtype == TYPE_SOA {
        push_soa(out, params.serial, minimum());
        (1, false)
    } else {
        push_answers(
            out,
            answers,
            query.qtype,
            params.default_ttl,
            limit - reserved.min(limit),
        )
    };
    if truncated {
        let flags = response_flags(reply.request_flags) | FLAG_AA | FLAG_TC;
        put_u16(out, 2, flags);
    } else if count == 0 {
        push_soa(out, params.serial, minimum());
        put_u16(out, NSCOUNT_AT, 1);
    }
    put_u16(out, ANCOUNT_AT, count);
    if let Some(edns) = reply.edns {
        push_opt_with(out, params.udp_payload, rcode::NOERROR, edns.dnssec_ok, &[]);
        put_u16(out, ARCOUNT_AT, 1);
    }
}

/// The shortest TTL of `answers`, rules without one counting as `default_ttl`.
fn shortest_ttl<'a>(answers: impl Iterator<Item = &'a DnsAnswer>, default_ttl: u32) -> u32 {
    answers
        .map(|a| a.ttl.unwrap_or(default_ttl))
        .min()
        .unwrap_or(default_ttl)
}

/// Appends the address records of `answers` that answer `qtype` while `out` stays within
/// `limit`: how many it wrote, and whether some did not fit. The records of one type form one
/// RRset and carry one TTL (RFC 2181 section 5.2), the shortest of their rules': rules of
/// different TTLs for one name then expire together, as a client would treat them anyway.
fn push_answers(
    out: &mut Vec<u8>,
    answers: &[DnsAnswer],
    qtype: u16,
    default_ttl: u32,
    limit: usize,
) -> (u16, bool) {
    let wanted = |a: &&DnsAnswer| {
        matches!(
            (qtype, a.address),
            (TYPE_ANY, _) | (TYPE_A, IpAddr::V4(_)) | (TYPE_AAAA, IpAddr::V6(_))
        )
    };
    let rrset_ttl = |v4: bool| {
        let family = answers.iter().filter(|a| a.address.is_ipv4() == v4);
        shortest_ttl(family, default_ttl)
    };
    let (ttl_a, ttl_aaaa) = match qtype {
        TYPE_A => (rrset_ttl(true), 0),
        TYPE_AAAA => (0, rrset_ttl(false)),
        _ => (rrset_ttl(true), rrset_ttl(false)),
    };
    let mut count: u16 = 0;
    for answer in answers.iter().filter(wanted) {
        let (rtype, ttl, rdata): (u16, u32, &[u8]) = match &answer.address {
            IpAddr::V4(a) => (TYPE_A, ttl_a, &a.octets()[..]),
            IpAddr::V6(a) => (TYPE_AAAA, ttl_aaaa, &a.octets()[..]),
        };
        if out.len() + 2 + RR_FIXED_LEN + rdata.len() > limit {
            return (count, true);
        }
        push_record_head(out, rtype, ttl, rdata.len());
        out.extend_from_slice(rdata);
        count += 1;
    }
    (count, false)
}

/// The answer records of the local answer to a `qtype` (A or AAAA) query, exactly as the
/// server writes them after the question (owner names point at the question), and how many
/// there are; None when the answer would be NODATA or the records exceed `max_len` bytes. For
/// a data plane that answers DNS itself (the XDP program): the server and it then give one
/// answer.
pub fn local_answer_records(
    answers: &[DnsAnswer],
    qtype: u16,
    default_ttl: u32,
    max_len: usize,
) -> Option<(u16, Vec<u8>)> {
    if qtype != TYPE_A && qtype != TYPE_AAAA {
        return None;
    }
    let mut out = Vec::new();
    let (count, truncated) = push_answers(&mut out, answers, qtype, default_ttl, max_len);
    (count > 0 && !truncated).then_some((count, out))
}

/// Writes an error response (or NOERROR-less reply) with `rcode`, which may be extended
/// (BADVERS); the question is echoed when it parsed.
pub(crate) fn write_error(out: &mut Vec<u8>, reply: &ReplyTo<'_>, rcode: u16, udp_payload: u16) {
    let question = reply.question.unwrap_or_default();
    let flags = response_flags(reply.request_flags) | (rcode & 0x000F);
    push_header(
        out,
        reply.id,
        flags,
        [
            u16::from(!question.is_empty()),
            0,
            0,
            u16::from(reply.edns.is_some()),
        ],
    );
    out.extend_from_slice(question);
    if let Some(edns) = reply.edns {
        push_opt_with(out, udp_payload, rcode, edns.dnssec_ok, &[]);
    }
}

fn push_record_head(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata_len: usize) {
    out.extend_from_slice(&QNAME_POINTER);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    // At most 35 bytes: an address or the SOA below.
    out.extend_from_slice(&(rdata_len as u16).to_be_bytes());
}

/// An SOA owned by the question name, as if each rule name were its own zone apex.
fn push_soa(out: &mut Vec<u8>, serial: u32, minimum: u32) {
    let rdata_len = QNAME_POINTER.len() + SOA_RNAME_LABEL.len() + QNAME_POINTER.len() + 20;
    push_record_head(out, TYPE_SOA, minimum, rdata_len);
    out.extend_from_slice(&QNAME_POINTER);
    out.extend_from_slice(SOA_RNAME_LABEL);
    out.extend_from_slice(&QNAME_POINTER);
    for value in [serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, minimum] {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A query (ID 7, RD) for `name` and `qtype`, with EDNS (payload 4096) when `edns`.
    pub(crate) fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        use hickory_proto::op::{Edns, Query as HQuery};
        use hickory_proto::rr::Name;
        let mut m = Message::query();
        m.metadata.id = 7;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    const PARAMS: LocalAnswerParams = LocalAnswerParams {
        default_ttl: 300,
        serial: 9,
        udp_payload: 1232,
    };

    fn answers() -> Vec<DnsAnswer> {
        vec![
            DnsAnswer {
                address: Ipv4Addr::new(192, 0, 2, 1).into(),
                ttl: Some(0),
            },
            DnsAnswer {
                address: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
                ttl: None,
            },
            DnsAnswer {
                address: Ipv4Addr::new(192, 0, 2, 2).into(),
                ttl: Some(60),
            },
        ]
    }

    fn respond(name: &str, qtype: RecordType, edns: bool, limit: usize) -> Message {
        let packet = query_bytes(name, qtype, edns);
        let query = Query::parse(&packet).unwrap();
        let mut out = Vec::new();
        write_local(&mut out, &query, &answers(), PARAMS, limit);
        assert!(out.len() <= limit);
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn answers_the_asked_family_with_one_ttl_per_rrset() {
        let m = respond("Edge.Example.", RecordType::A, true, 1232);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert!(!m.metadata.truncation);
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.queries[0].name().to_ascii(), "Edge.Example.");
        let got: Vec<(RData, u32)> = m.answers.iter().map(|r| (r.data.clone(), r.ttl)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].1, got[1].1),
            (0, 0),
            "the shortest rule TTL, 0, for the RRset"
        );
        assert!(m.edns.is_some());
        let aaaa = respond("edge.example.", RecordType::AAAA, false, 512);
        assert_eq!(aaaa.answers.len(), 1);
        assert_eq!(aaaa.answers[0].ttl, 300);
        assert!(aaaa.edns.is_none());
        let any = respond("edge.example.", RecordType::ANY, false, 512);
        let ttls: Vec<(RecordType, u32)> = any
            .answers
            .iter()
            .map(|r| (r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            ttls,
            [
                (RecordType::A, 0),
                (RecordType::AAAA, 300),
                (RecordType::A, 0)
            ]
        );
    }

    #[test]
    fn an_soa_query_gets_the_apex_soa_as_its_answer() {
        let m = respond("Edge.Example.", RecordType::SOA, false, 512);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.authorities.is_empty());
        let [record] = m.answers.as_slice() else {
            panic!("expected one answer, got {:?}", m.answers);
        };
        let RData::SOA(soa) = &record.data else {
            panic!("expected an SOA, got {record:?}");
        };
        assert_eq!(record.name.to_ascii(), "Edge.Example.");
        assert_eq!((soa.serial, soa.minimum, record.ttl), (9, 0, 0));
    }

    #[test]
    fn nodata_carries_an_soa_with_the_shortest_ttl() {
        let m = respond("edge.example.", RecordType::MX, true, 1232);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("expected an SOA, got {:?}", m.authorities);
        };
        assert_eq!(soa.serial, 9);
        assert_eq!(soa.minimum, 0);
        assert_eq!(soa.rname.to_ascii(), "hostmaster.edge.example.");
    }

    #[test]
    fn truncates_at_whole_records() {
        let packet = query_bytes("edge.example.", RecordType::A, false);
        let query = Query::parse(&packet).unwrap();
        let many: Vec<DnsAnswer> = (0..100u8)
            .map(|i| DnsAnswer {
                address: Ipv4Addr::new(198, 51, 100, i).into(),
                ttl: Some(5),
            })
            .collect();
        let mut out = Vec::new();
        write_local(&mut out, &query, &many, PARAMS, 512);
        assert!(out.len() <= 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.answers.len(), (512 - 12 - 18) / 16);
    }

    #[test]
    fn error_responses_echo_question_and_edns() {
        let packet = query_bytes("x.example.", RecordType::A, true);
        let query = Query::parse(&packet).unwrap();
        let mut out = Vec::new();
        write_error(&mut out, &query.reply, rcode::BADVERS, 1232);
        let m = Message::from_vec(&out).unwrap();
        // hickory names the extended RCODE 16 BADSIG (it is also BADVERS, RFC 6891).
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert_eq!(m.queries.len(), 1);
    }
}
