//! An upstream resolver's answer, checked once and kept in wire form, so that relaying it or
//! serving it from the cache is a copy plus a few patched fields (ID, flags, TTLs).

use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use crate::query::ReplyTo;
use crate::response::{response_flags, write_error};
use crate::wire::{
    push_header, push_opt_with, put_u32, rcode, record_at, u16_at, u32_at, FLAG_AD, FLAG_QR,
    FLAG_TC, HEADER_LEN, OPCODE_MASK, OPT_LEN, TYPE_OPT, TYPE_SOA,
};

/// Why an upstream response is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamAnswerError {
    #[error("the response does not match the query (ID, flags or question)")]
    Mismatch,
    #[error("the response is truncated")]
    Truncated,
    #[error("the response is malformed")]
    Malformed,
    #[error("the response carries extended RCODE {0}")]
    ExtendedRcode(u16),
}

/// One record of the stored answer, with offsets relative to the start of the records.
#[derive(Debug, Clone, Copy)]
struct StoredRecord {
    end: usize,
    ttl_at: usize,
    ttl: u32,
}

/// The records of an upstream response (its OPT record removed), with where each one ends and
/// where its TTL sits. Compression pointers inside point at offsets of the original message; the
/// header and question we write in front have the same length, so they stay valid.
#[derive(Debug)]
pub(crate) struct ForwardedAnswer {
    rcode: u16,
    question_len: usize,
    records: Box<[u8]>,
    stored: Box<[StoredRecord]>,
    /// Answer, authority and additional counts.
    sections: [u16; 3],
    /// The upstream set AD: it validated the answer (RFC 4035 §3.2.3).
    authentic: bool,
    received: Instant,
    /// How long it may be served from the cache; `None` if not at all.
    lifetime: Option<Duration>,
}

impl ForwardedAnswer {
    /// Checks `msg` against the query it answers (`id` and the question as sent) and keeps it.
    /// Answers are cached for their smallest TTL, negative ones (NXDOMAIN, NODATA) for the SOA's
    /// TTL capped by its MINIMUM (RFC 2308 §5), never longer than `max_ttl`; other RCODEs and
    /// negative answers without an SOA are not cached.
    pub(crate) fn parse(
        msg: &[u8],
        id: u16,
        question: &[u8],
        max_ttl: u32,
    ) -> Result<Self, UpstreamAnswerError> {
        Self::parse_inner(msg, id, question, max_ttl, true)
    }

    fn parse_inner(
        msg: &[u8],
        id: u16,
        question: &[u8],
        max_ttl: u32,
        may_reencode: bool,
    ) -> Result<Self, UpstreamAnswerError> {
        use UpstreamAnswerError::*;
        let flags = u16_at(msg, 2).ok_or(Malformed)?;
        let records_at = HEADER_LEN + question.len();
        if u16_at(msg, 0) != Some(id)
            || flags & FLAG_QR == 0
            || flags & OPCODE_MASK != 0
            || u16_at(msg, 4) != Some(1)
            || !same_question(msg.get(HEADER_LEN..records_at).ok_or(Mismatch)?, question)
        {
            return Err(Mismatch);
        }
        if flags & FLAG_TC != 0 {
            return Err(Truncated);
        }
        let count = |at| u16_at(msg, at).map(usize::from).ok_or(Malformed);
        let (an, ns, ar) = (count(6)?, count(8)?, count(10)?);
        let total = an + ns + ar;
        let mut stored = Vec::with_capacity(total);
        let mut sections = [an as u16, ns as u16, ar as u16];
        let mut pos = records_at;
        let mut rcode_high = 0u16;
        let mut negative_ttl: Option<u32> = None;
        for index in 0..total {
            let record = record_at(msg, pos).ok_or(Malformed)?;
            pos = record.end;
            if record.rtype == TYPE_OPT {
                if index < an + ns {
                    return Err(Malformed);
                }
                if index + 1 != total {
                    return if may_reencode {
                        Self::reencoded(msg, id, question, max_ttl)
                    } else {
                        Err(Malformed)
                    };
                }
                rcode_high = u16::from(msg[record.ttl_at()]) << 4;
                sections[2] -= 1;
                continue;
            }
            let ttl = u32_at(msg, record.ttl_at()).ok_or(Malformed)?;
            if record.rtype == TYPE_SOA && index >= an && index < an + ns {
                let minimum = u32_at(msg, record.end.checked_sub(4).ok_or(Malformed)?);
                let soa_ttl = ttl.min(minimum.ok_or(Malformed)?);
                negative_ttl = Some(negative_ttl.map_or(soa_ttl, |t| t.min(soa_ttl)));
            }
            stored.push(StoredRecord {
                end: record.end - records_at,
                ttl_at: record.ttl_at() - records_at,
                ttl,
            });
        }
        if rcode_high != 0 {
            return Err(ExtendedRcode(rcode_high | (flags & 0xF)));
        }
        let rcode = flags & 0xF;
        let records_end = stored.last().map_or(records_at, |r| r.end + records_at);
        let lifetime = match rcode {
            rcode::NOERROR if an > 0 => stored.iter().map(|r| r.ttl).min(),
            rcode::NOERROR | rcode::NXDOMAIN => negative_ttl,
            _ => None,
        }
        .map(|ttl| ttl.min(max_ttl))
        .filter(|ttl| *ttl > 0)
        .map(|ttl| Duration::from_secs(u64::from(ttl)));
        Ok(ForwardedAnswer {
            rcode,
            question_len: question.len(),
            records: msg[records_at..records_end].into(),
            stored: stored.into_boxed_slice(),
            sections,
            authentic: flags & FLAG_AD != 0,
            received: Instant::now(),
            lifetime,
        })
    }

    /// An OPT record that is not the last record cannot be cut out without moving records that
    /// others may point into; hickory-proto decodes and re-encodes the message without it.
    fn reencoded(
        msg: &[u8],
        id: u16,
        question: &[u8],
        max_ttl: u32,
    ) -> Result<Self, UpstreamAnswerError> {
        let mut message = Message::from_vec(msg).map_err(|_| UpstreamAnswerError::Malformed)?;
        if let Some(edns) = message.edns.take() {
            if edns.rcode_high() != 0 {
                let low = u16::from(message.metadata.response_code.low());
                return Err(UpstreamAnswerError::ExtendedRcode(
                    u16::from(edns.rcode_high()) << 4 | low,
                ));
            }
        }
        let bytes = message
            .to_vec()
            .map_err(|_| UpstreamAnswerError::Malformed)?;
        Self::parse_inner(&bytes, id, question, max_ttl, false)
    }

    pub(crate) fn rcode(&self) -> u16 {
        self.rcode
    }

    /// SERVFAIL, NOTIMP and REFUSED say more about that upstream than about the name; another
    /// upstream may do better.
    pub(crate) fn is_upstream_failure(&self) -> bool {
        matches!(self.rcode, rcode::SERVFAIL | rcode::NOTIMP | rcode::REFUSED)
    }

    pub(crate) fn cache_lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// Whole seconds since it was received, while it may still be served from the cache.
    pub(crate) fn age_if_fresh(&self, now: Instant) -> Option<u32> {
        let age = now.saturating_duration_since(self.received);
        (age < self.lifetime?).then(|| u32::try_from(age.as_secs()).unwrap_or(u32::MAX))
    }

    /// Bytes held, for the cache's memory bound.
    pub(crate) fn footprint(&self) -> usize {
        size_of::<Self>() + self.records.len() + self.stored.len() * size_of::<StoredRecord>()
    }

    /// Writes the answer for the client: its ID and question, our flags, the upstream's RCODE,
    /// every TTL lowered by `age`, whole records up to `limit` (TC set when some are left out)
    /// and an OPT record when the client sent one.
    pub(crate) fn write(
        &self,
        out: &mut Vec<u8>,
        reply: &ReplyTo<'_>,
        limit: usize,
        age: u32,
        udp_payload: u16,
    ) {
        let question = reply.question.unwrap_or_default();
        if question.len() != self.question_len {
            write_error(out, reply, rcode::SERVFAIL, udp_payload);
            return;
        }
        let reserved = if reply.edns.is_some() { OPT_LEN } else { 0 };
        let room = limit.saturating_sub(HEADER_LEN + question.len() + reserved);
        let kept = self.stored.partition_point(|r| r.end <= room);
        let truncated = kept < self.stored.len();
        let mut counts = [0u16; 3];
        let mut left = kept;
        for (count, section) in counts.iter_mut().zip(self.sections) {
            *count = section.min(left as u16);
            left -= usize::from(*count);
        }
        let mut flags = response_flags(reply.request_flags) | self.rcode;
        if truncated {
            flags |= FLAG_TC;
        }
        // AD only for a client that asked for DNSSEC or for AD itself (RFC 6840 §5.8).
        let dnssec_ok = reply.edns.is_some_and(|e| e.dnssec_ok);
        if self.authentic && (dnssec_ok || reply.request_flags & FLAG_AD != 0) {
            flags |= FLAG_AD;
        }
        push_header(
            out,
            reply.id,
            flags,
            [1, counts[0], counts[1], counts[2] + u16::from(reserved > 0)],
        );
        out.extend_from_slice(question);
        let records_at = out.len();
        let kept_end = kept.checked_sub(1).map_or(0, |last| self.stored[last].end);
        out.extend_from_slice(&self.records[..kept_end]);
        for record in &self.stored[..kept] {
            put_u32(
                out,
                records_at + record.ttl_at,
                record.ttl.saturating_sub(age),
            );
        }
        if reply.edns.is_some() {
            push_opt_with(out, udp_payload, rcode::NOERROR, dnssec_ok, &[]);
        }
    }
}

/// The upstream echoes the question; the name may differ in case (0x20 randomisation, RFC 4343).
fn same_question(got: &[u8], sent: &[u8]) -> bool {
    let name_len = sent.len().saturating_sub(4);
    got.len() == sent.len()
        && got[..name_len].eq_ignore_ascii_case(&sent[..name_len])
        && got[name_len..] == sent[name_len..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Query;
    use hickory_proto::op::{Edns, Query as HQuery, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    fn client_query(name: &str, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xBEEF;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
        ));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn upstream_response(id: u16, name: &str, rcode: ResponseCode, answers: u8) -> Message {
        let name = Name::from_ascii(name).unwrap();
        let mut m = Message::response(id, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(HQuery::query(name.clone(), RecordType::A));
        for i in 0..answers {
            let ttl = 100 + u32::from(i);
            m.add_answer(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(A(Ipv4Addr::new(203, 0, 113, i))),
            ));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.set_edns(edns);
        m
    }

    fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
        let zone = Name::from_ascii(zone).unwrap();
        Record::from_rdata(
            zone.clone(),
            ttl,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, minimum)),
        )
    }

    #[test]
    fn relays_with_client_id_and_lowered_ttls() {
        let packet = client_query("www.example.", true);
        let query = Query::parse(&packet).unwrap();
        let question = query.reply.question.unwrap();
        let upstream = upstream_response(42, "WWW.example.", ResponseCode::NoError, 3);
        let answer =
            ForwardedAnswer::parse(&upstream.to_vec().unwrap(), 42, question, 86_400).unwrap();
        assert_eq!(answer.cache_lifetime(), Some(Duration::from_secs(100)));
        let mut out = Vec::new();
        answer.write(&mut out, &query.reply, 1232, 30, 1232);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0xBEEF);
        assert!(!m.metadata.authoritative && m.metadata.recursion_available);
        assert_eq!(m.queries[0].name().to_ascii(), "www.example.");
        let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![70, 71, 72]);
        assert!(m.edns.is_some());
    }

    #[test]
    fn truncates_relayed_answers_for_small_buffers() {
        let packet = client_query("many.example.", false);
        let query = Query::parse(&packet).unwrap();
        let upstream = upstream_response(1, "many.example.", ResponseCode::NoError, 60);
        let bytes = upstream.to_vec().unwrap();
        assert!(bytes.len() > 512);
        let answer = ForwardedAnswer::parse(&bytes, 1, query.reply.question.unwrap(), 60).unwrap();
        assert_eq!(answer.cache_lifetime(), Some(Duration::from_secs(60)));
        let mut out = Vec::new();
        answer.write(&mut out, &query.reply, 512, 0, 1232);
        assert!(out.len() <= 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 60);
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum() {
        let packet = client_query("nx.example.", false);
        let question = Query::parse(&packet)
            .unwrap()
            .reply
            .question
            .unwrap()
            .to_vec();
        let mut nx = upstream_response(5, "nx.example.", ResponseCode::NXDomain, 0);
        nx.add_authority(soa("example.", 900, 120));
        let answer = ForwardedAnswer::parse(&nx.to_vec().unwrap(), 5, &question, 86_400).unwrap();
        assert_eq!(answer.rcode(), rcode::NXDOMAIN);
        assert_eq!(answer.cache_lifetime(), Some(Duration::from_secs(120)));
        let bare = upstream_response(5, "nx.example.", ResponseCode::NXDomain, 0);
        let answer = ForwardedAnswer::parse(&bare.to_vec().unwrap(), 5, &question, 86_400).unwrap();
        assert_eq!(answer.cache_lifetime(), None);
        let fail = upstream_response(5, "nx.example.", ResponseCode::ServFail, 0);
        let answer = ForwardedAnswer::parse(&fail.to_vec().unwrap(), 5, &question, 86_400).unwrap();
        assert!(answer.is_upstream_failure());
        assert_eq!(answer.cache_lifetime(), None);
    }

    #[test]
    fn refuses_mismatched_truncated_and_broken_responses() {
        let packet = client_query("a.example.", false);
        let question = Query::parse(&packet)
            .unwrap()
            .reply
            .question
            .unwrap()
            .to_vec();
        let ok = upstream_response(9, "a.example.", ResponseCode::NoError, 1);
        let bytes = ok.to_vec().unwrap();
        let parse = |b: &[u8], id| ForwardedAnswer::parse(b, id, &question, 60).map(|_| ());
        assert_eq!(parse(&bytes, 8), Err(UpstreamAnswerError::Mismatch));
        let other = upstream_response(9, "b.example.", ResponseCode::NoError, 1);
        assert_eq!(
            parse(&other.to_vec().unwrap(), 9),
            Err(UpstreamAnswerError::Mismatch)
        );
        let mut truncated = bytes.clone();
        truncated[2] |= 0x02;
        assert_eq!(parse(&truncated, 9), Err(UpstreamAnswerError::Truncated));
        assert_eq!(
            parse(&bytes[..bytes.len() - 3], 9),
            Err(UpstreamAnswerError::Malformed)
        );
        let mut badvers = ok.clone();
        badvers.metadata.response_code = ResponseCode::BADVERS;
        assert_eq!(
            parse(&badvers.to_vec().unwrap(), 9),
            Err(UpstreamAnswerError::ExtendedRcode(16))
        );
    }

    #[test]
    fn an_opt_record_in_the_middle_is_removed() {
        let packet = client_query("a.example.", false);
        let question = Query::parse(&packet)
            .unwrap()
            .reply
            .question
            .unwrap()
            .to_vec();
        let mut bytes = upstream_response(3, "a.example.", ResponseCode::NoError, 1)
            .to_vec()
            .unwrap();
        // Append an additional A record after the OPT record.
        bytes
            .extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01\x00\x00\x00\x0A\x00\x04\xC6\x33\x64\x07");
        bytes[11] += 1;
        let answer = ForwardedAnswer::parse(&bytes, 3, &question, 60).unwrap();
        let reply = Query::parse(&packet).unwrap().reply;
        let mut out = Vec::new();
        answer.write(&mut out, &reply, 512, 0, 1232);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.additionals.len(), 1);
        assert!(m.edns.is_none());
        assert_eq!(answer.cache_lifetime(), Some(Duration::from_secs(10)));
    }
}
