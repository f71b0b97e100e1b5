//! The oracle of the query parser: what [`Query::parse`] makes of a packet, checked against
//! hickory-proto's decoder reading the same bytes.
//!
//! mep is stricter than hickory in documented ways (one question, no compression pointer in the
//! question, RFC 6891's OPT rules), and more lenient in one: records after the question are
//! checked for framing only, since a query carries nothing there but an OPT record. So the
//! property is directional:
//! - mep drops a packet exactly when it has no header or is a response;
//! - every answer echoes the query's id; NOTIMP is exactly a non-zero opcode;
//! - a question hickory cannot read, a compressed one, or not exactly one question is FORMERR;
//! - a question mep accepts is the one hickory reads: same name (ignoring ASCII case), type and
//!   class, and the EDNS payload hickory sees;
//! - a packet hickory decodes whole, with an answerable question and EDNS version 0 owned by the
//!   root, mep accepts;
//! - BADVERS only for an EDNS version hickory reads as non-zero.

use hickory_proto::op::{Message, OpCode, Query as HickoryQuery};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::query::{Query, Rejection};
use crate::wire::{rcode, HEADER_LEN};

/// What mep's parser made of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Reply {
        id: u16,
        rcode: u16,
    },
    Query {
        id: u16,
        /// The wire name, lower case.
        name: Vec<u8>,
        qtype: u16,
        qclass: u16,
        udp_payload: Option<u16>,
        /// The DO bit of the OPT record.
        dnssec_ok: bool,
    },
}

/// mep's verdict on `packet`.
pub fn mep_verdict(packet: &[u8]) -> Verdict {
    match Query::parse(packet) {
        Err(Rejection::Drop) => Verdict::Drop,
        Err(Rejection::Reply { reply, rcode }) => Verdict::Reply {
            id: reply.id,
            rcode,
        },
        Ok(q) => Verdict::Query {
            id: q.reply.id,
            name: q.wire_name().to_vec(),
            qtype: q.qtype,
            qclass: q.qclass,
            udp_payload: q.reply.edns.map(|e| e.udp_payload),
            dnssec_ok: q.reply.edns.is_some_and(|e| e.dnssec_ok),
        },
    }
}

/// The uncompressed wire form of a name hickory read, from its labels.
fn wire_name(name: &hickory_proto::rr::Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// hickory's reading of the question: the query and whether it was written without
/// compression (its bytes end where the uncompressed name would).
fn hickory_question(packet: &[u8]) -> Option<(HickoryQuery, bool)> {
    let mut decoder = BinDecoder::new(packet.get(HEADER_LEN..)?);
    let query = HickoryQuery::read(&mut decoder).ok()?;
    let consumed = packet.len() - HEADER_LEN - decoder.len();
    let wire_len = wire_name(query.name()).len();
    Some((query, consumed == wire_len + 4))
}

/// The owners and types of every record after the question, read by hickory.
fn hickory_records(packet: &[u8], question_end: usize, count: usize) -> Option<Vec<Record>> {
    let mut decoder = BinDecoder::new(packet);
    decoder.read_slice(question_end).ok()?;
    (0..count)
        .map(|_| Record::read(&mut decoder).ok())
        .collect()
}

/// Checks the property above for one packet; the error says where mep and hickory part.
pub fn check(packet: &[u8]) -> Result<(), String> {
    let verdict = mep_verdict(packet);
    let fail = |why: &str| Err(format!("{why}: mep {verdict:?} for {packet:02x?}"));
    let short_or_response = packet.len() < HEADER_LEN || packet[2] & 0x80 != 0;
    if short_or_response != (verdict == Verdict::Drop) {
        return fail("drops exactly headerless packets and responses");
    }
    if short_or_response {
        return Ok(());
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let answered_id = match &verdict {
        Verdict::Reply { id, .. } | Verdict::Query { id, .. } => *id,
        Verdict::Drop => unreachable!("handled above"),
    };
    if answered_id != id {
        return fail("echoes the id");
    }
    let opcode = (packet[2] >> 3) & 0x0F;
    let notimp = matches!(verdict, Verdict::Reply { rcode: r, .. } if r == rcode::NOTIMP);
    if (opcode != 0) != notimp {
        return fail("NOTIMP exactly for a non-zero opcode");
    }
    if opcode != 0 {
        return Ok(());
    }
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    let question = if qdcount == 1 {
        hickory_question(packet)
    } else {
        None
    };
    let formerr = matches!(verdict, Verdict::Reply { rcode: r, .. } if r == rcode::FORMERR);
    let Some((query, uncompressed)) = question.filter(|(_, plain)| *plain) else {
        return if formerr {
            Ok(())
        } else {
            fail("FORMERR for anything but one uncompressed question hickory reads")
        };
    };
    debug_assert!(uncompressed);
    let qtype = u16::from(query.query_type());
    let qclass = u16::from(query.query_class());
    let hickory_name = wire_name(query.name()).to_ascii_lowercase();
    if let Verdict::Query {
        name,
        qtype: t,
        qclass: c,
        ..
    } = &verdict
    {
        if *name != hickory_name || *t != qtype || *c != qclass {
            return fail("the accepted question is hickory's");
        }
    }
    let question_end = HEADER_LEN + hickory_name.len() + 4;
    let Ok(message) = Message::from_vec(packet) else {
        // hickory refuses the records after the question (their contents, which mep does not
        // read): nothing more to compare.
        return Ok(());
    };
    let counts: usize = [6, 8, 10]
        .iter()
        .map(|at| usize::from(u16::from_be_bytes([packet[*at], packet[at + 1]])))
        .sum();
    let opt_owned_by_root = hickory_records(packet, question_end, counts).is_some_and(|records| {
        records
            .iter()
            .filter(|r| r.record_type() == RecordType::OPT)
            .all(|r| r.name.is_root())
    });
    let edns = message.edns.as_ref();
    let version = edns.map_or(0, |e| e.version());
    if matches!(verdict, Verdict::Reply { rcode: r, .. } if r == rcode::BADVERS) && version == 0 {
        return fail("BADVERS only for a non-zero EDNS version");
    }
    let answerable = !matches!(
        query.query_type(),
        RecordType::OPT | RecordType::AXFR | RecordType::IXFR
    );
    if message.metadata.op_code == OpCode::Query && answerable && version == 0 && opt_owned_by_root
    {
        match &verdict {
            Verdict::Query {
                udp_payload,
                dnssec_ok,
                ..
            } => {
                // Payloads below 512 count as 512 on both sides (RFC 6891 section 6.2.3).
                if udp_payload.map(|p| p.max(512)) != edns.map(|e| e.max_payload().max(512)) {
                    return fail("the EDNS payload is hickory's");
                }
                if *dnssec_ok != edns.is_some_and(|e| e.flags().dnssec_ok) {
                    return fail("the DO bit is hickory's");
                }
            }
            _ => return fail("accepts what hickory decodes whole"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::differential::damage::damage;
    use proptest::prelude::*;

    /// A query mep and hickory both read, as a start for mutations.
    fn plain_query(labels: &[Vec<u8>], qtype: u16, edns: Option<(u16, u8)>, id: u16) -> Vec<u8> {
        let mut m = Vec::new();
        crate::wire::push_header(&mut m, id, 0x0100, [1, 0, 0, u16::from(edns.is_some())]);
        for label in labels {
            m.push(label.len() as u8);
            m.extend_from_slice(label);
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        if let Some((size, version)) = edns {
            crate::wire::push_opt(&mut m, size, 0);
            let at = m.len() - 5;
            m[at] = version;
        }
        m
    }

    fn label() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..12)
    }

    fn query_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(label(), 0..5),
            prop::sample::select(vec![1u16, 28, 16, 41, 252, 251, 255, 0, 65535]),
            prop::option::of((any::<u16>(), prop::sample::select(vec![0u8, 0, 0, 1]))),
            any::<u16>(),
        )
            .prop_map(|(labels, qtype, edns, id)| plain_query(&labels, qtype, edns, id))
    }

    /// A query with some of its bytes replaced, inserted or cut off.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (query_strategy(), damage(0..4, 16)).prop_map(|(mut m, damage)| {
            damage.apply(&mut m);
            m
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_agree_with_hickory(packet in prop::collection::vec(any::<u8>(), 0..96)) {
            prop_assert_eq!(check(&packet), Ok(()));
        }

        #[test]
        fn mutated_queries_agree_with_hickory(packet in mutated()) {
            prop_assert_eq!(check(&packet), Ok(()));
        }
    }

    #[test]
    fn the_oracle_catches_a_wrong_verdict() {
        let good = plain_query(&[b"edge".to_vec()], 1, Some((1232, 0)), 7);
        assert_eq!(check(&good), Ok(()));
        assert!(matches!(mep_verdict(&good), Verdict::Query { .. }));
        let two = {
            let mut m = good.clone();
            m[5] = 2;
            m
        };
        assert_eq!(check(&two), Ok(()));
        assert_eq!(
            mep_verdict(&two),
            Verdict::Reply {
                id: 7,
                rcode: rcode::FORMERR
            }
        );
    }
}
