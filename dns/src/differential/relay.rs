//! The oracle of the relay of upstream answers: what [`ForwardedAnswer`] keeps of an upstream
//! resolver's response and writes for a client, checked against hickory-proto reading both.
//!
//! An upstream is trusted for its data, not for its framing: a broken, forged or hostile response
//! must be refused or relayed intact, and must never crash mep or reach a client mangled. mep
//! checks a response's framing and not its record data, so the property is directional:
//! - parsing and writing never panic;
//! - a response too short for its flags is Malformed; Mismatch is exactly another id, not a
//!   response, a non-zero opcode, not one question, or another question (ASCII case in the name
//!   aside); a matching response is Truncated exactly when it has TC;
//! - a matching response that hickory decodes whole is accepted unless hickory reads an extended
//!   RCODE in it, and then refused for that RCODE; no other response is refused for one;
//! - what mep writes carries the client's id and question as sent, QR and RA, the client's RD and
//!   CD, the upstream's RCODE, AD exactly when the upstream validated the answer and the client
//!   asked for DNSSEC or AD (RFC 6840 §5.8), an OPT record exactly when the client sent one (with
//!   the client's DO bit), and fits the client's limit;
//! - when hickory decodes the response, it decodes what mep writes: the response's records but
//!   the OPT, in order and in their sections, each TTL lowered by the age, cut before the first
//!   record that does not fit, with TC exactly when some are left out;
//! - such a response is cached for the smallest TTL of a positive answer, or of a negative
//!   answer's SOA TTLs and MINIMUMs (RFC 2308 §5), capped; not when that is zero, nor for another
//!   RCODE.

use std::time::Duration;

use hickory_proto::op::{Message, Query as HickoryQuery};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::forwarded::{ForwardedAnswer, UpstreamAnswerError};
use crate::query::{Query, ReplyTo};
use crate::wire::{
    push_header, push_opt_with, rcode, u16_at, FLAG_AA, FLAG_AD, FLAG_CD, FLAG_QR, FLAG_RA,
    FLAG_RD, FLAG_TC, HEADER_LEN, OPCODE_MASK, OPT_LEN,
};

/// The EDNS payload size mep announces in relayed answers.
const OUR_PAYLOAD: u16 = 1232;

/// One upstream response and what the relay is asked to do with it.
#[derive(Debug, Clone, Copy)]
pub struct Relay<'a> {
    /// The client's query, as it sent it.
    pub client_query: &'a [u8],
    /// The ID mep sent upstream.
    pub sent_id: u16,
    /// The upstream's response.
    pub response: &'a [u8],
    /// The largest response the client takes.
    pub limit: usize,
    /// Seconds the answer has been in the cache.
    pub age: u32,
    /// The cache's cap on TTLs.
    pub max_ttl: u32,
}

/// Checks the property above for one response; the error says where mep and hickory part.
pub fn check(case: &Relay<'_>) -> Result<(), String> {
    // What clients send is the query oracle's concern.
    let Ok(query) = Query::parse(case.client_query) else {
        return Ok(());
    };
    let reply = query.reply;
    let question = reply.question.unwrap_or_default();
    let msg = case.response;
    let fail = |why: &str| Err(format!("{why}: {case:02x?}"));
    let parsed = ForwardedAnswer::parse(msg, case.sent_id, question, case.max_ttl);
    if let Some(want) = framing_refusal(msg, case.sent_id, question) {
        return match parsed {
            Err(got) if got == want => Ok(()),
            Err(got) => fail(&format!("refused as {want}, not as {got}")),
            Ok(_) => fail(&format!("refused as {want}, not accepted")),
        };
    }
    let hickory = Message::from_vec(msg).ok();
    let rcode_high = hickory
        .as_ref()
        .and_then(|m| m.edns.as_ref())
        .map_or(0, |e| e.rcode_high());
    let rcode = u16::from(rcode_high) << 4 | u16::from(msg[3] & 0x0F);
    let answer = match parsed {
        Ok(answer) if rcode_high == 0 => answer,
        Ok(_) => return fail(&format!("refused for RCODE {rcode}, not accepted")),
        // mep reads framing only; hickory refuses more.
        Err(_) if hickory.is_none() => return Ok(()),
        Err(UpstreamAnswerError::ExtendedRcode(got)) if got == rcode => return Ok(()),
        Err(UpstreamAnswerError::Malformed)
            if records_of(msg).is_some_and(|r| r.owner_points_into_header) =>
        {
            return Ok(())
        }
        Err(got) => {
            return fail(&format!(
                "hickory decodes it whole (RCODE {rcode}), mep refused it as {got}"
            ))
        }
    };

    let mut out = Vec::new();
    answer.write(&mut out, &reply, case.limit, case.age, OUR_PAYLOAD);
    if let Err(why) = check_header(&out, &reply, msg, case.limit) {
        return fail(&why);
    }
    let Some(upstream) = hickory else {
        return Ok(());
    };
    match check_records(msg, &out, &reply, case) {
        Ok(Checked::Records) => {}
        Ok(Checked::NamesReadRewrittenBytes) => return Ok(()),
        Err(why) => return fail(&why),
    }
    let written = match Message::from_vec(&out) {
        Ok(written) => written,
        Err(err) => {
            return fail(&format!(
                "hickory decodes what mep writes ({err}): {out:02x?}"
            ))
        }
    };
    let client_edns = reply.edns.map(|e| e.dnssec_ok);
    let written_edns = written.edns.as_ref().map(|e| e.flags().dnssec_ok);
    if client_edns != written_edns
        || written
            .edns
            .as_ref()
            .is_some_and(|e| e.rcode_high() != 0 || e.max_payload() != OUR_PAYLOAD)
    {
        return fail("an OPT record exactly when the client sent one, with its DO bit");
    }
    if answer.cache_lifetime() != cache_lifetime(&upstream, case.max_ttl) {
        return fail(&format!(
            "cached for {:?}",
            cache_lifetime(&upstream, case.max_ttl)
        ));
    }
    Ok(())
}

/// The 16-bit field at `at`; 0 past the end (only read where the length was checked).
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16_at(bytes, at).unwrap_or_default()
}

/// How a response must be refused for its header and question alone, if it must.
fn framing_refusal(msg: &[u8], id: u16, question: &[u8]) -> Option<UpstreamAnswerError> {
    if msg.len() < 4 {
        return Some(UpstreamAnswerError::Malformed);
    }
    let flags = be16(msg, 2);
    let name_len = question.len() - 4;
    let same_question = msg
        .get(HEADER_LEN..HEADER_LEN + question.len())
        .is_some_and(|echoed| {
            echoed[..name_len].eq_ignore_ascii_case(&question[..name_len])
                && echoed[name_len..] == question[name_len..]
        });
    let matches = be16(msg, 0) == id
        && flags & FLAG_QR != 0
        && flags & OPCODE_MASK == 0
        && msg.get(4..6) == Some(&[0, 1])
        && same_question;
    if !matches {
        Some(UpstreamAnswerError::Mismatch)
    } else if flags & FLAG_TC != 0 {
        Some(UpstreamAnswerError::Truncated)
    } else {
        None
    }
}

/// The header and question of what mep wrote, and its size.
fn check_header(out: &[u8], reply: &ReplyTo<'_>, msg: &[u8], limit: usize) -> Result<(), String> {
    let question = reply.question.unwrap_or_default();
    let opt_len = if reply.edns.is_some() { OPT_LEN } else { 0 };
    if out.len() < HEADER_LEN + question.len() + opt_len {
        return Err("a header, the question and the client's OPT record".into());
    }
    let flags = be16(out, 2);
    let upstream_flags = be16(msg, 2);
    let asked_for_ad =
        reply.edns.is_some_and(|e| e.dnssec_ok) || reply.request_flags & FLAG_AD != 0;
    let want_ad = upstream_flags & FLAG_AD != 0 && asked_for_ad;
    let echoed = FLAG_RD | FLAG_CD | OPCODE_MASK;
    if be16(out, 0) != reply.id
        || flags & FLAG_QR == 0
        || flags & FLAG_RA == 0
        || flags & FLAG_AA != 0
        || flags & echoed != reply.request_flags & echoed
        || flags & 0x0F != upstream_flags & 0x0F
        || (flags & FLAG_AD != 0) != want_ad
    {
        return Err(format!("header flags {flags:04x}"));
    }
    if be16(out, 4) != 1 || out[HEADER_LEN..HEADER_LEN + question.len()] != *question {
        return Err("the client's question as sent".into());
    }
    if out.len() > limit.max(HEADER_LEN + question.len() + opt_len) {
        return Err(format!("{} bytes for a limit of {limit}", out.len()));
    }
    Ok(())
}

/// A record as hickory reads it, with its section (0 answer, 1 authority, 2 additional) and its
/// length on the wire.
struct WireRecord {
    section: u8,
    record: Record,
    len: usize,
    ttl_at: usize,
}

/// What hickory reads of a message's records.
struct Records {
    /// Every record but OPT.
    list: Vec<WireRecord>,
    /// An OPT record came before the last record (mep re-encodes such a response).
    opt_before_last: bool,
    /// An owner name points into the header: hickory follows it, mep refuses it (nobody writes
    /// one, and the header it would read differs in what mep writes).
    owner_points_into_header: bool,
}

fn records_of(msg: &[u8]) -> Option<Records> {
    records_counted_by(msg, msg)
}

/// [`records_of`] with the section counts of `counted`'s header.
fn records_counted_by(msg: &[u8], counted: &[u8]) -> Option<Records> {
    let mut decoder = BinDecoder::new(msg);
    decoder.read_slice(HEADER_LEN).ok()?;
    for _ in 0..be16(counted, 4) {
        HickoryQuery::read(&mut decoder).ok()?;
    }
    let counts = [be16(counted, 6), be16(counted, 8), be16(counted, 10)];
    let total: usize = counts.iter().map(|c| usize::from(*c)).sum();
    let mut records = Records {
        list: Vec::with_capacity(total),
        opt_before_last: false,
        owner_points_into_header: false,
    };
    let mut index = 0;
    for (section, count) in (0u8..).zip(counts) {
        for _ in 0..count {
            let start = decoder.index();
            let record = Record::read(&mut decoder).ok()?;
            records.owner_points_into_header |= points_into_header(msg, start);
            let ttl_at = name_end(msg, start)? + 4;
            index += 1;
            if record.record_type() == RecordType::OPT {
                records.opt_before_last |= index < total;
                continue;
            }
            records.list.push(WireRecord {
                section,
                record,
                len: decoder.index() - start,
                ttl_at,
            });
        }
    }
    Some(records)
}

/// Where the name that starts at `at` ends on the wire.
fn name_end(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            _ if len & 0xC0 == 0xC0 => return Some(at + 2),
            _ => at += 1 + usize::from(len),
        }
    }
}

/// Whether a name of the message reads bytes that mep rewrites in what it relays (the header's
/// id, flags and counts, or a TTL), so that it reads differently there: the records read
/// differently with those bytes flipped. Nobody writes such a name; mep relays records as the
/// upstream wrote them and does not read the names in their data.
fn names_read_rewritten_bytes(msg: &[u8], records: &Records) -> bool {
    let mut flipped = msg.to_vec();
    let ttls = records.list.iter().map(|r| r.ttl_at..r.ttl_at + 4);
    for range in std::iter::once(0..HEADER_LEN).chain(ttls) {
        for byte in &mut flipped[range] {
            *byte = !*byte;
        }
    }
    records_counted_by(&flipped, msg).is_none_or(|read| {
        read.list.len() != records.list.len()
            || read
                .list
                .iter()
                .zip(&records.list)
                .any(|(a, b)| a.record != b.record)
    })
}

/// Whether the name hickory read at `at` follows a compression pointer into the header.
fn points_into_header(msg: &[u8], mut at: usize) -> bool {
    // hickory read the name, so it ends; the bound only keeps a mistake here finite.
    for _ in 0..256 {
        match msg.get(at..at + 2) {
            Some([len, low]) if len & 0xC0 == 0xC0 => {
                at = usize::from(u16::from_be_bytes([len & 0x3F, *low]));
                if at < HEADER_LEN {
                    return true;
                }
            }
            _ => match msg.get(at) {
                Some(0) | None => return false,
                Some(len) => at += 1 + usize::from(*len),
            },
        }
    }
    false
}

/// What [`check_records`] could compare.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    Records,
    /// Not comparable: see [`names_read_rewritten_bytes`].
    NamesReadRewrittenBytes,
}

/// The records mep wrote against the upstream's.
fn check_records(
    msg: &[u8],
    out: &[u8],
    reply: &ReplyTo<'_>,
    case: &Relay<'_>,
) -> Result<Checked, String> {
    let upstream = records_of(msg).ok_or("hickory reads the records of a message it decodes")?;
    let reencoded = upstream.opt_before_last;
    if !reencoded && names_read_rewritten_bytes(msg, &upstream) {
        return Ok(Checked::NamesReadRewrittenBytes);
    }
    let upstream = upstream.list;
    let written = records_of(out)
        .ok_or_else(|| format!("hickory reads the records mep writes: {out:02x?}"))?
        .list;
    if written.len() > upstream.len() {
        return Err(format!("{} records from {}", written.len(), upstream.len()));
    }
    for (i, (got, want)) in written.iter().zip(&upstream).enumerate() {
        let mut lowered = want.record.clone();
        lowered.ttl = lowered.ttl.saturating_sub(case.age);
        // hickory's record equality leaves the TTL out (RFC 2136 §1.1).
        if got.section != want.section || got.record != lowered || got.record.ttl != lowered.ttl {
            return Err(format!(
                "record {i}: {} in section {}, upstream's {} in section {}",
                got.record, got.section, want.record, want.section
            ));
        }
    }
    let truncated = be16(out, 2) & FLAG_TC != 0;
    if truncated != (written.len() < upstream.len()) {
        return Err("TC exactly when records are left out".into());
    }
    // Re-encoded records may be shorter than the upstream's; only the upstream's own are
    // measured.
    let opt_len = if reply.edns.is_some() { OPT_LEN } else { 0 };
    let records_end = out.len() - opt_len;
    if let Some(next) = upstream.get(written.len()).filter(|_| !reencoded) {
        if records_end + next.len + opt_len <= case.limit {
            return Err(format!("record {} would have fit", written.len()));
        }
    }
    Ok(Checked::Records)
}

/// How long hickory's reading of a response says it may be cached.
fn cache_lifetime(upstream: &Message, max_ttl: u32) -> Option<Duration> {
    let records = upstream
        .answers
        .iter()
        .chain(&upstream.authorities)
        .chain(&upstream.additionals);
    let soa_ttls = upstream.authorities.iter().filter_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    });
    let rcode = u16::from(upstream.metadata.response_code.low());
    match rcode {
        rcode::NOERROR if !upstream.answers.is_empty() => records.map(|r| r.ttl).min(),
        rcode::NOERROR | rcode::NXDOMAIN => soa_ttls.min(),
        _ => None,
    }
    .map(|ttl| ttl.min(max_ttl))
    .filter(|ttl| *ttl > 0)
    .map(|ttl| Duration::from_secs(u64::from(ttl)))
}

/// Builds a case from arbitrary bytes, for the fuzz target: `data[0]`'s bits choose the client's
/// RD, CD, AD, EDNS and DO; `data[1..3]` is the limit; `data[3]` the age; the rest is the
/// upstream's response. The client asked the response's own question when it has a plain one.
pub fn check_bytes(data: &[u8]) -> Result<(), String> {
    let Some((head, response)) = data.split_first_chunk::<4>() else {
        return Ok(());
    };
    let [bits, limit_high, limit_low, age] = *head;
    let asked = plain_question(response).unwrap_or(b"\x01a\x07example\x00\x00\x01\x00\x01");
    let mut flags = 0;
    for (bit, flag) in [(1, FLAG_RD), (2, FLAG_CD), (4, FLAG_AD)] {
        if bits & bit != 0 {
            flags |= flag;
        }
    }
    let edns = bits & 8 != 0;
    let mut client_query = Vec::with_capacity(HEADER_LEN + asked.len() + OPT_LEN);
    push_header(&mut client_query, 0x5EED, flags, [1, 0, 0, u16::from(edns)]);
    client_query.extend_from_slice(asked);
    if edns {
        push_opt_with(&mut client_query, 4096, 0, bits & 16 != 0, &[]);
    }
    check(&Relay {
        client_query: &client_query,
        sent_id: be16(response, 0),
        response,
        limit: usize::from(u16::from_be_bytes([limit_high, limit_low])),
        age: u32::from(age),
        max_ttl: 86_400,
    })
}

/// The question of a message when it is written without compression.
fn plain_question(msg: &[u8]) -> Option<&[u8]> {
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            return msg.get(HEADER_LEN..at + 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::differential::damage::damage;
    use hickory_proto::op::{Edns, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
    use hickory_proto::rr::Name;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NAMES: [&str; 5] = [
        "a.example.",
        "www.example.",
        "deep.sub.example.",
        "example.",
        "other.test.",
    ];

    fn name(index: usize) -> Name {
        Name::from_ascii(NAMES[index % NAMES.len()]).expect("a valid name")
    }

    /// The name with the ASCII case of its letters flipped where `mask` has a bit set.
    fn case_variant(name: &str, mask: u64) -> String {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    fn ttl() -> impl Strategy<Value = u32> {
        prop_oneof![
            prop::sample::select(vec![0u32, 1, 30, 300, 86_400, u32::MAX]),
            any::<u32>(),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (0..NAMES.len(), ttl(), 0u8..7, any::<u32>(), 0..NAMES.len()).prop_map(
            |(owner, ttl, kind, value, target)| {
                let data = match kind {
                    0 => RData::A(A(Ipv4Addr::from(value))),
                    1 => RData::AAAA(AAAA(Ipv6Addr::from(u128::from(value) << 64))),
                    2 => RData::CNAME(CNAME(name(target))),
                    3 => RData::TXT(TXT::new(vec![format!("v={value}")])),
                    4 => RData::MX(MX::new(value as u16, name(target))),
                    5 => RData::NS(NS(name(target))),
                    _ => RData::SOA(SOA::new(
                        name(target),
                        name(owner),
                        value,
                        3600,
                        600,
                        86_400,
                        value % 7200,
                    )),
                };
                Record::from_rdata(name(owner), ttl, data)
            },
        )
    }

    #[derive(Debug, Clone)]
    struct Exchange {
        client_query: Vec<u8>,
        sent_id: u16,
        response: Vec<u8>,
    }

    /// A client's query and an upstream's response to it, as hickory writes them: any RCODE
    /// (extended ones too), AD, sometimes TC, records in every section, an OPT record (sometimes
    /// not the last one), sometimes another ID or an echo in another case.
    fn exchange() -> impl Strategy<Value = Exchange> {
        let client = (
            0..NAMES.len(),
            prop::sample::select(vec![1u16, 28, 16, 5, 15]),
            any::<(u16, bool, bool, bool)>(),
            prop::option::of((any::<u16>(), any::<bool>())),
        );
        let sections = (
            prop::collection::vec(record(), 0..8),
            prop::collection::vec(record(), 0..3),
            prop::collection::vec(record(), 0..4),
        );
        let upstream = (
            prop::sample::select(vec![
                ResponseCode::NoError,
                ResponseCode::NXDomain,
                ResponseCode::ServFail,
                ResponseCode::Refused,
                ResponseCode::NotImp,
                ResponseCode::BADVERS,
            ]),
            any::<(bool, u64)>(),
            prop::bool::weighted(0.05),
            prop::option::of(any::<bool>()),
            prop::bool::weighted(0.1),
            prop::sample::select(vec![0u16, 0, 0, 0, 0, 0, 0, 1]),
        );
        (client, sections, upstream).prop_map(
            |(
                (owner, qtype, (id, rd, cd, ad), client_edns),
                (answers, authorities, additionals),
                (response_code, (validated, case_mask), tc, upstream_do, opt_in_middle, id_skew),
            )| {
                let qname = NAMES[owner];
                let mut query = Message::query();
                query.metadata.id = id;
                query.metadata.recursion_desired = rd;
                query.metadata.checking_disabled = cd;
                query.metadata.authentic_data = ad;
                query.add_query(HickoryQuery::query(
                    Name::from_ascii(case_variant(qname, case_mask)).expect("a valid name"),
                    RecordType::from(qtype),
                ));
                if let Some((payload, dnssec_ok)) = client_edns {
                    let mut edns = Edns::new();
                    edns.set_max_payload(payload).set_dnssec_ok(dnssec_ok);
                    query.set_edns(edns);
                }
                let sent_id = id ^ 0x3C3C;
                let mut response = Message::response(sent_id ^ id_skew, OpCode::Query);
                response.metadata.response_code = response_code;
                response.metadata.authentic_data = validated;
                response.metadata.truncation = tc;
                response.metadata.recursion_available = true;
                response.add_query(HickoryQuery::query(
                    Name::from_ascii(case_variant(qname, !case_mask)).expect("a valid name"),
                    RecordType::from(qtype),
                ));
                response.answers = answers;
                response.authorities = authorities;
                response.additionals = additionals;
                if let Some(dnssec_ok) = upstream_do {
                    let mut edns = Edns::new();
                    edns.set_max_payload(1232).set_dnssec_ok(dnssec_ok);
                    response.set_edns(edns);
                }
                let mut response = response.to_vec().expect("hickory writes what it built");
                if opt_in_middle && upstream_do.is_some() {
                    // An A record for the question's name after the OPT record.
                    response.extend_from_slice(
                        b"\xC0\x0C\x00\x01\x00\x01\x00\x00\x00\x0A\x00\x04\xC6\x33\x64\x07",
                    );
                    response[11] += 1;
                }
                Exchange {
                    client_query: query.to_vec().expect("hickory writes what it built"),
                    sent_id,
                    response,
                }
            },
        )
    }

    /// An exchange whose response has some bytes replaced, some cut off or some appended.
    fn mutated() -> impl Strategy<Value = Exchange> {
        (exchange(), damage(1..4, 8)).prop_map(|(mut exchange, damage)| {
            damage.apply(&mut exchange.response);
            exchange
        })
    }

    fn limit() -> impl Strategy<Value = usize> {
        prop_oneof![
            prop::sample::select(vec![512usize, 1232, 65_535]),
            0usize..700
        ]
    }

    fn age() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), 0u32..400, Just(u32::MAX)]
    }

    fn run(exchange: &Exchange, limit: usize, age: u32, max_ttl: u32) -> Result<(), String> {
        check(&Relay {
            client_query: &exchange.client_query,
            sent_id: exchange.sent_id,
            response: &exchange.response,
            limit,
            age,
            max_ttl,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        #[test]
        fn relayed_responses_agree_with_hickory(
            exchange in exchange(),
            limit in limit(),
            age in age(),
            max_ttl in prop::sample::select(vec![1u32, 60, 86_400]),
        ) {
            prop_assert_eq!(run(&exchange, limit, age, max_ttl), Ok(()));
        }

        #[test]
        fn mutated_responses_agree_with_hickory(
            exchange in mutated(),
            limit in limit(),
            age in age(),
        ) {
            prop_assert_eq!(run(&exchange, limit, age, 86_400), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_agree_with_hickory(data in prop::collection::vec(any::<u8>(), 0..160)) {
            prop_assert_eq!(check_bytes(&data), Ok(()));
        }

        #[test]
        fn arbitrary_records_agree_with_hickory(
            params in any::<[u8; 4]>(),
            mut header in any::<[u8; 12]>(),
            records in prop::collection::vec(any::<u8>(), 0..160),
        ) {
            // A response to the question, with a few records of random bytes.
            header[2] = (header[2] | 0x80) & !0x78;
            header[4..6].copy_from_slice(&[0, 1]);
            for at in [6, 8, 10] {
                header[at] = 0;
                header[at + 1] %= 4;
            }
            let mut data = params.to_vec();
            data.extend_from_slice(&header);
            data.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
            data.extend_from_slice(&records);
            prop_assert_eq!(check_bytes(&data), Ok(()));
        }
    }

    #[test]
    fn the_oracle_catches_a_wrong_relay() {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.add_query(HickoryQuery::query(name(1), RecordType::A));
        query.set_edns(Edns::new());
        let client_query = query.to_vec().expect("hickory writes it");
        let mut response = Message::response(9, OpCode::Query);
        response.add_query(HickoryQuery::query(name(1), RecordType::A));
        for i in 0..40 {
            response.add_answer(Record::from_rdata(
                name(1),
                300,
                RData::A(A(Ipv4Addr::new(198, 51, 100, i))),
            ));
        }
        response.set_edns(Edns::new());
        let response = response.to_vec().expect("hickory writes it");
        let exchange = Exchange {
            client_query,
            sent_id: 9,
            response,
        };
        assert_eq!(run(&exchange, 1232, 10, 60), Ok(()));
        assert_eq!(run(&exchange, 300, 10, 60), Ok(()));

        let query = Query::parse(&exchange.client_query).expect("hickory's query parses");
        let question = query.reply.question.expect("a question");
        let answer = ForwardedAnswer::parse(&exchange.response, 9, question, 60)
            .expect("a matching response");
        let case = Relay {
            client_query: &exchange.client_query,
            sent_id: 9,
            response: &exchange.response,
            limit: 300,
            age: 10,
            max_ttl: 60,
        };
        let write = |reply: &ReplyTo<'_>| {
            let mut out = Vec::new();
            answer.write(&mut out, reply, 300, 10, OUR_PAYLOAD);
            out
        };
        let good = write(&query.reply);
        assert_eq!(
            check_header(&good, &query.reply, &exchange.response, 300),
            Ok(())
        );
        assert_eq!(
            check_records(&exchange.response, &good, &query.reply, &case),
            Ok(Checked::Records)
        );

        // Another client's id, a TTL not lowered, TC dropped, or one record fewer than fits.
        let mut other = query.reply;
        other.id ^= 1;
        assert!(check_header(&write(&other), &query.reply, &exchange.response, 300).is_err());
        let first_ttl = HEADER_LEN + question.len() + 6;
        let mut stale = good.clone();
        stale[first_ttl..first_ttl + 4].copy_from_slice(&300u32.to_be_bytes());
        assert!(check_records(&exchange.response, &stale, &query.reply, &case).is_err());
        let mut untruncated = good.clone();
        untruncated[2] &= !0x02;
        assert!(check_records(&exchange.response, &untruncated, &query.reply, &case).is_err());
        let roomier = Relay { limit: 400, ..case };
        assert!(check_records(&exchange.response, &good, &query.reply, &roomier).is_err());
    }
}
