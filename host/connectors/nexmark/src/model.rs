//! The Nexmark data model and its deterministic generator.
//!
//! Follows the reference generator (Apache Beam's `NexmarkGenerator`, also used by the Flink
//! Nexmark suite): events come in epochs of 50 (1 person, 3 auctions, 46 bids); ids are derived
//! from the event number so that bids refer to auctions and persons that exist, with the same
//! key spaces (first person id 1000, first auction id 1000, 100 auctions in flight, 1000 active
//! people, hot auctions / bidders / sellers, 10 000 channels with 4 hot ones, log-uniform prices,
//! padding to the average event sizes). Every event's fields come from a random generator seeded
//! by its event number, so any subtask can produce any event, and runs are repeatable. The values
//! are not bit-identical to Java's `Random`; the distributions and key relationships are the same.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// Events per epoch.
pub const PROPORTION_TOTAL: u64 = 50;
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: i64 = 5;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
const HOT_AUCTION_RATIO: i64 = 100;
const HOT_BIDDER_RATIO: i64 = 100;
const HOT_SELLER_RATIO: i64 = 100;
const HOT_AUCTION_ODDS: u32 = 2;
const HOT_BIDDER_ODDS: u32 = 4;
const HOT_SELLER_ODDS: u32 = 4;
const HOT_CHANNEL_ODDS: u32 = 100;
const CHANNELS: usize = 10_000;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;

const FIRST_NAMES: &[&str] =
    &["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: &[&str] = &["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: &[&str] =
    &["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const HOT_CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// The three Nexmark streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// New users.
    Person,
    /// New auctions.
    Auction,
    /// Bids on auctions.
    Bid,
}

impl EventKind {
    /// Offsets within an epoch of 50 that carry this kind.
    pub fn offsets(self) -> Range<u64> {
        match self {
            Self::Person => 0..PERSON_PROPORTION,
            Self::Auction => PERSON_PROPORTION..PERSON_PROPORTION + AUCTION_PROPORTION,
            Self::Bid => PERSON_PROPORTION + AUCTION_PROPORTION..PROPORTION_TOTAL,
        }
    }

    /// The stream's schema (column names as in the Nexmark / Flink SQL DDL).
    pub fn schema(self) -> SchemaRef {
        static PERSON: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema_of(&[
                ("id", DataType::Int64),
                ("name", DataType::Utf8),
                ("emailAddress", DataType::Utf8),
                ("creditCard", DataType::Utf8),
                ("city", DataType::Utf8),
                ("state", DataType::Utf8),
                ("dateTime", timestamp()),
                ("extra", DataType::Utf8),
            ])
        });
        static AUCTION: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema_of(&[
                ("id", DataType::Int64),
                ("itemName", DataType::Utf8),
                ("description", DataType::Utf8),
                ("initialBid", DataType::Int64),
                ("reserve", DataType::Int64),
                ("dateTime", timestamp()),
                ("expires", timestamp()),
                ("seller", DataType::Int64),
                ("category", DataType::Int64),
                ("extra", DataType::Utf8),
            ])
        });
        static BID: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema_of(&[
                ("auction", DataType::Int64),
                ("bidder", DataType::Int64),
                ("price", DataType::Int64),
                ("channel", DataType::Utf8),
                ("url", DataType::Utf8),
                ("dateTime", timestamp()),
                ("extra", DataType::Utf8),
            ])
        });
        Arc::clone(match self {
            Self::Person => &PERSON,
            Self::Auction => &AUCTION,
            Self::Bid => &BID,
        })
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn schema_of(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(|(name, data_type)| Field::new(*name, data_type.clone(), false)).collect::<Vec<_>>(),
    ))
}

/// Channel names and URLs: 4 hot channels, then `channel-<n>` for the cold ones.
struct Channels {
    hot_urls: Vec<String>,
    cold: Vec<(String, String)>,
}

static CHANNEL_TABLE: LazyLock<Channels> = LazyLock::new(|| {
    let hot_urls =
        (0..HOT_CHANNELS.len()).map(|i| base_url(&mut SmallRng::seed_from_u64(u64::MAX - i as u64))).collect();
    let cold = (0..CHANNELS)
        .map(|n| {
            let mut rng = SmallRng::seed_from_u64(n as u64);
            let mut url = base_url(&mut rng);
            if rng.random::<bool>() {
                url.push_str(&format!("&channel_id={}", (n as i32).reverse_bits().unsigned_abs()));
            }
            (format!("channel-{n}"), url)
        })
        .collect();
    Channels { hot_urls, cold }
});

fn base_url(rng: &mut SmallRng) -> String {
    format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        next_string(rng, 5),
        next_string(rng, 5),
        next_string(rng, 5)
    )
}

/// A string of 3..max_len characters, lowercase letters with the odd space (reference `nextString`).
fn next_string(rng: &mut SmallRng, max_len: usize) -> String {
    let len = 3 + rng.random_range(0..max_len.saturating_sub(3).max(1));
    (0..len)
        .map(|_| if rng.random_range(0..13) == 0 { ' ' } else { char::from(b'a' + rng.random_range(0..26u8)) })
        .collect()
}

/// Appends `len` random lowercase letters (reference `nextExactString`), 8 letters per draw.
fn push_letters(rng: &mut SmallRng, out: &mut Vec<u8>, len: usize) {
    let mut remaining = len;
    while remaining > 0 {
        let bits = rng.random::<u64>();
        for byte in bits.to_le_bytes().iter().take(remaining.min(8)) {
            out.push(b'a' + byte % 26);
        }
        remaining = remaining.saturating_sub(8);
    }
}

/// Padding so events average `average` bytes (reference `nextExtra`): ±20 % around the gap.
fn extra_len(rng: &mut SmallRng, current: usize, average: usize) -> usize {
    if current > average {
        return 0;
    }
    let wanted = average - current;
    let delta = (wanted as f64 * 0.2).round() as usize;
    let min = wanted - delta;
    if delta == 0 { min } else { min + rng.random_range(0..2 * delta) }
}

/// Log-uniform price in cents between 1 and 1 000 000 dollars (reference `nextPrice`).
fn next_price(rng: &mut SmallRng) -> i64 {
    (10f64.powf(rng.random::<f64>() * 6.0) * 100.0).round() as i64
}

// The reference computes `epoch * persons + min(offset, persons - 1)`; with one person per epoch
// that is the epoch itself.
const _: () = assert!(PERSON_PROPORTION == 1);

fn last_base0_person_id(event: u64) -> i64 {
    (event / PROPORTION_TOTAL) as i64
}

fn last_base0_auction_id(event: u64) -> i64 {
    let mut epoch = (event / PROPORTION_TOTAL) as i64;
    let mut offset = (event % PROPORTION_TOTAL) as i64;
    let (person, auction) = (PERSON_PROPORTION as i64, AUCTION_PROPORTION as i64);
    if offset < person {
        epoch -= 1;
        offset = auction - 1;
    } else if offset >= person + auction {
        offset = auction - 1;
    } else {
        offset -= person;
    }
    epoch * auction + offset
}

fn next_base0_person_id(event: u64, rng: &mut SmallRng) -> i64 {
    let people = last_base0_person_id(event) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.random_range(0..active + PERSON_ID_LEAD)
}

fn next_base0_auction_id(event: u64, rng: &mut SmallRng) -> i64 {
    let max = last_base0_auction_id(event);
    let min = (max - NUM_IN_FLIGHT_AUCTIONS).max(0);
    min + rng.random_range(0..max - min + 1 + AUCTION_ID_LEAD)
}

/// Generates events by event number.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    base_time_ms: i64,
    inter_event_delay_us: u64,
}

impl Generator {
    /// A generator whose event 0 happens at `base_time_ms`, with `rate` events per second.
    pub fn new(base_time_ms: i64, rate: u64) -> Self {
        Self { base_time_ms, inter_event_delay_us: (1_000_000 / rate.max(1)).max(1) }
    }

    /// Event time of an event, in milliseconds.
    pub fn timestamp_ms(&self, event: u64) -> i64 {
        self.base_time_ms + (event * self.inter_event_delay_us / 1000) as i64
    }

    /// A batch of events of `kind` for these event numbers (which must all be of that kind).
    pub fn batch(&self, kind: EventKind, events: impl Iterator<Item = u64>) -> RecordBatch {
        match kind {
            EventKind::Bid => self.bids(events),
            EventKind::Auction => self.auctions(events),
            EventKind::Person => self.persons(events),
        }
    }

    fn bids(&self, events: impl Iterator<Item = u64>) -> RecordBatch {
        let channels = &*CHANNEL_TABLE;
        let capacity = events.size_hint().0;
        let mut auction = Int64Builder::with_capacity(capacity);
        let mut bidder = Int64Builder::with_capacity(capacity);
        let mut price = Int64Builder::with_capacity(capacity);
        let mut channel = StringBuilder::with_capacity(capacity, capacity * 8);
        let mut url = StringBuilder::with_capacity(capacity, capacity * 64);
        let mut date_time = TimestampMillisecondBuilder::with_capacity(capacity);
        let mut extra = StringBuilder::with_capacity(capacity, capacity * AVG_BID_BYTES);
        let mut letters = Vec::with_capacity(AVG_BID_BYTES);
        for event in events {
            let rng = &mut SmallRng::seed_from_u64(event);
            let auction_id = if rng.random_range(0..HOT_AUCTION_ODDS) > 0 {
                (last_base0_auction_id(event) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
            } else {
                next_base0_auction_id(event, rng)
            };
            let bidder_id = if rng.random_range(0..HOT_BIDDER_ODDS) > 0 {
                (last_base0_person_id(event) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
            } else {
                next_base0_person_id(event, rng)
            };
            auction.append_value(auction_id + FIRST_AUCTION_ID);
            bidder.append_value(bidder_id + FIRST_PERSON_ID);
            price.append_value(next_price(rng));
            if rng.random_range(0..HOT_CHANNEL_ODDS) > 0 {
                let hot = rng.random_range(0..HOT_CHANNELS.len());
                channel.append_value(HOT_CHANNELS[hot]);
                url.append_value(&channels.hot_urls[hot]);
            } else {
                let (name, link) = &channels.cold[rng.random_range(0..CHANNELS)];
                channel.append_value(name);
                url.append_value(link);
            }
            date_time.append_value(self.timestamp_ms(event));
            letters.clear();
            let len = extra_len(rng, 32, AVG_BID_BYTES);
            push_letters(rng, &mut letters, len);
            extra.append_value(std::str::from_utf8(&letters).expect("ASCII letters"));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(auction.finish()),
            Arc::new(bidder.finish()),
            Arc::new(price.finish()),
            Arc::new(channel.finish()),
            Arc::new(url.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ];
        RecordBatch::try_new(EventKind::Bid.schema(), columns).expect("bid columns match the bid schema")
    }

    fn auctions(&self, events: impl Iterator<Item = u64>) -> RecordBatch {
        let capacity = events.size_hint().0;
        let mut id = Int64Builder::with_capacity(capacity);
        let mut item_name = StringBuilder::new();
        let mut description = StringBuilder::new();
        let mut initial_bid = Int64Builder::with_capacity(capacity);
        let mut reserve = Int64Builder::with_capacity(capacity);
        let mut date_time = TimestampMillisecondBuilder::with_capacity(capacity);
        let mut expires = TimestampMillisecondBuilder::with_capacity(capacity);
        let mut seller = Int64Builder::with_capacity(capacity);
        let mut category = Int64Builder::with_capacity(capacity);
        let mut extra = StringBuilder::new();
        let mut letters = Vec::with_capacity(AVG_AUCTION_BYTES);
        for event in events {
            let rng = &mut SmallRng::seed_from_u64(event);
            let seller_id = if rng.random_range(0..HOT_SELLER_ODDS) > 0 {
                (last_base0_person_id(event) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
            } else {
                next_base0_person_id(event, rng)
            };
            let initial = next_price(rng);
            let name = next_string(rng, 20);
            let text = next_string(rng, 100);
            let timestamp = self.timestamp_ms(event);
            // Auctions close within about twice the time it takes to open 100 more.
            let events_for_auctions = (NUM_IN_FLIGHT_AUCTIONS as u64 * PROPORTION_TOTAL) / AUCTION_PROPORTION;
            let horizon = self.timestamp_ms(event + events_for_auctions) - timestamp;
            let length = 1 + rng.random_range(0..(horizon * 2).max(1));
            id.append_value(last_base0_auction_id(event) + FIRST_AUCTION_ID);
            initial_bid.append_value(initial);
            reserve.append_value(initial + next_price(rng));
            date_time.append_value(timestamp);
            expires.append_value(timestamp + length);
            seller.append_value(seller_id + FIRST_PERSON_ID);
            category.append_value(FIRST_CATEGORY_ID + rng.random_range(0..NUM_CATEGORIES));
            letters.clear();
            let len = extra_len(rng, 8 * 5 + name.len() + text.len(), AVG_AUCTION_BYTES);
            push_letters(rng, &mut letters, len);
            extra.append_value(std::str::from_utf8(&letters).expect("ASCII letters"));
            item_name.append_value(name);
            description.append_value(text);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(item_name.finish()),
            Arc::new(description.finish()),
            Arc::new(initial_bid.finish()),
            Arc::new(reserve.finish()),
            Arc::new(date_time.finish()),
            Arc::new(expires.finish()),
            Arc::new(seller.finish()),
            Arc::new(category.finish()),
            Arc::new(extra.finish()),
        ];
        RecordBatch::try_new(EventKind::Auction.schema(), columns).expect("auction columns match the auction schema")
    }

    fn persons(&self, events: impl Iterator<Item = u64>) -> RecordBatch {
        let capacity = events.size_hint().0;
        let mut id = Int64Builder::with_capacity(capacity);
        let mut name = StringBuilder::new();
        let mut email = StringBuilder::new();
        let mut credit_card = StringBuilder::new();
        let mut city = StringBuilder::new();
        let mut state = StringBuilder::new();
        let mut date_time = TimestampMillisecondBuilder::with_capacity(capacity);
        let mut extra = StringBuilder::new();
        let mut letters = Vec::with_capacity(AVG_PERSON_BYTES);
        for event in events {
            let rng = &mut SmallRng::seed_from_u64(event);
            let full_name = format!(
                "{} {}",
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            );
            let address = format!("{}@{}.com", next_string(rng, 7), next_string(rng, 5));
            let card = format!(
                "{:04} {:04} {:04} {:04}",
                rng.random_range(0..10_000),
                rng.random_range(0..10_000),
                rng.random_range(0..10_000),
                rng.random_range(0..10_000)
            );
            let person_city = US_CITIES[rng.random_range(0..US_CITIES.len())];
            let person_state = US_STATES[rng.random_range(0..US_STATES.len())];
            id.append_value(last_base0_person_id(event) + FIRST_PERSON_ID);
            date_time.append_value(self.timestamp_ms(event));
            letters.clear();
            let current = 8 + full_name.len() + address.len() + card.len() + person_city.len() + person_state.len();
            let len = extra_len(rng, current, AVG_PERSON_BYTES);
            push_letters(rng, &mut letters, len);
            extra.append_value(std::str::from_utf8(&letters).expect("ASCII letters"));
            name.append_value(full_name);
            email.append_value(address);
            credit_card.append_value(card);
            city.append_value(person_city);
            state.append_value(person_state);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(name.finish()),
            Arc::new(email.finish()),
            Arc::new(credit_card.finish()),
            Arc::new(city.finish()),
            Arc::new(state.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ];
        RecordBatch::try_new(EventKind::Person.schema(), columns).expect("person columns match the person schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    fn bids(range: Range<u64>) -> RecordBatch {
        let generator = Generator::new(0, 10_000);
        generator.batch(EventKind::Bid, range.filter(|e| EventKind::Bid.offsets().contains(&(e % PROPORTION_TOTAL))))
    }

    #[test]
    fn events_are_deterministic_by_number() {
        let a = bids(0..5_000);
        let b = bids(0..5_000);
        assert_eq!(a, b);
        assert_eq!(a.num_rows(), 4_600);
    }

    #[test]
    fn bids_refer_to_existing_auctions_and_people() {
        let batch = bids(0..50_000);
        let auctions: &Int64Array = batch.column(0).as_primitive::<Int64Type>();
        let bidders: &Int64Array = batch.column(1).as_primitive::<Int64Type>();
        // 1 000 epochs: 3 000 auctions and 1 000 people exist, plus the id lead.
        assert!(
            auctions
                .values()
                .iter()
                .all(|&a| (FIRST_AUCTION_ID..FIRST_AUCTION_ID + 3_000 + AUCTION_ID_LEAD).contains(&a))
        );
        assert!(
            bidders.values().iter().all(|&p| (FIRST_PERSON_ID..FIRST_PERSON_ID + 1_000 + PERSON_ID_LEAD).contains(&p))
        );
        let prices = batch.column(2).as_primitive::<Int64Type>();
        assert!(prices.values().iter().all(|&p| (100..=100_000_000).contains(&p)));
        let hot = batch.column(3).as_string::<i32>().iter().filter(|c| HOT_CHANNELS.contains(&c.unwrap())).count();
        assert!(hot > batch.num_rows() * 95 / 100, "about 99 % of bids use a hot channel, got {hot}");
        let extra = batch.column(6).as_string::<i32>();
        let mean = extra.iter().map(|e| e.unwrap().len()).sum::<usize>() / batch.num_rows();
        assert!((60..=76).contains(&mean), "padding averages ~68 bytes, got {mean}");
    }

    #[test]
    fn ids_follow_the_epoch_layout() {
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!(last_base0_auction_id(1), 0);
        assert_eq!(last_base0_auction_id(3), 2);
        assert_eq!(last_base0_auction_id(10), 2);
        assert_eq!(last_base0_auction_id(51), 3);
        let generator = Generator::new(0, 10_000);
        let persons = generator.batch(EventKind::Person, [0, 50, 100].into_iter());
        assert_eq!(persons.column(0).as_primitive::<Int64Type>().values(), &[1000, 1001, 1002]);
        let auctions = generator.batch(EventKind::Auction, [1, 2, 3, 51].into_iter());
        assert_eq!(auctions.column(0).as_primitive::<Int64Type>().values(), &[1000, 1001, 1002, 1003]);
        assert_eq!(generator.timestamp_ms(10_000), 1_000);
    }
}
