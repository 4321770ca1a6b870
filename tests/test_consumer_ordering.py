"""The kit's dedup, order and watermark under duplicated, reordered, late and missing events
(property-based: hypothesis generates the streams)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erpnext_streaming.consumer import Deduplicator, Event, Reorderer

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
STEP = timedelta(seconds=1)
LATENESS = timedelta(seconds=10)
COMPANIES = ("Acme Corp", "Globex Ltd", "Stark Industries")


def push_all(orderer: Reorderer, events) -> list[Event]:
	return [released for event in events for released in orderer.push(event)]


def make_event(company: str, sequence: int, event_id: str | None = None) -> Event:
	"""Sequence n of a company happened at T0 + n seconds (commit order = time order)."""
	record = {
		"event_id": event_id or f"{company}/{sequence}",
		"event_type": "posted",
		"doctype": "GL Entry",
		"name": f"GLE-{sequence}",
		"company": company,
		"event_time": T0 + sequence * STEP,
		"emitted_at": T0 + sequence * STEP,
	}
	return Event.from_record(record, sequence)


@st.composite
def streams(draw):
	"""Per company events 1..n, some never arriving (Dead rows), each arriving after a delay:
	most within the lateness, some far beyond it; some delivered twice."""
	arrivals = []  # (arrival time, tiebreak, event)
	truth: dict[str, dict] = {}
	counter = 0
	for company in COMPANIES[: draw(st.integers(1, 3))]:
		n = draw(st.integers(1, 25))
		dropped = set(draw(st.lists(st.integers(1, n), max_size=3)))
		very_late = set(draw(st.lists(st.integers(1, n), max_size=2))) - dropped
		truth[company] = {"n": n, "dropped": dropped, "very_late": very_late}
		for sequence in range(1, n + 1):
			if sequence in dropped:
				continue
			event = make_event(company, sequence)
			if sequence in very_late:
				delay = draw(st.integers(12, 40))  # seconds: beyond the 10 s lateness
			else:
				delay = draw(st.integers(0, 9))  # within the lateness
			arrivals.append((event.event_time + timedelta(seconds=delay), counter, event))
			counter += 1
			if draw(st.booleans()) and draw(st.booleans()):  # a duplicate, a little later
				again = event.event_time + timedelta(seconds=delay + draw(st.integers(0, 30)))
				arrivals.append((again, counter, event))
				counter += 1
	arrivals.sort(key=lambda a: (a[0], a[1]))
	return [event for _, _, event in arrivals], truth


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_dedup_order_and_watermark_hold_for_any_interleaving(stream):
	arrivals, truth = stream
	orderer = Reorderer(lateness=LATENESS, first_sequence=1)
	released: list[Event] = []
	newest: dict[str, datetime] = {}
	must_not_be_late: set[str] = set()
	for event in arrivals:
		newest[event.company] = max(newest.get(event.company, event.event_time), event.event_time)
		if event.event_time > newest[event.company] - LATENESS:
			must_not_be_late.add(event.event_id)  # arrived inside the lateness window
		released += orderer.push(event)
	released += orderer.flush()

	ids = [e.event_id for e in released]
	assert len(ids) == len(set(ids)), "no event is released twice"
	assert set(ids) == {e.event_id for e in arrivals}, "every distinct event is released"
	assert orderer.stats["duplicates"] == len(arrivals) - len(set(e.event_id for e in arrivals))

	by_company = defaultdict(list)
	for event in released:
		by_company[event.company].append(event)
	for company, events in by_company.items():
		in_order = [e.sequence for e in events if not e.late]
		assert in_order == sorted(in_order) and len(in_order) == len(set(in_order)), "sequence order"
		for event in events:
			if event.late:
				assert event.event_id not in must_not_be_late, "only events beyond the lateness are late"
				assert event.sequence in orderer.gaps(company), "a late event fills a gap given up earlier"
		arrived = {e.sequence for e in events}
		missing = {s for s in truth[company]["dropped"] if s < max(arrived)}
		assert missing <= set(orderer.gaps(company)), "missing sequence numbers are reported as gaps"
		if not truth[company]["dropped"] and not truth[company]["very_late"]:
			assert [e.sequence for e in events] == list(range(1, truth[company]["n"] + 1))
			assert not any(e.late for e in events) and not orderer.gaps(company)


@settings(max_examples=200, deadline=None)
@given(streams())
def test_event_time_order_releases_by_time_behind_the_watermark(stream):
	arrivals, _ = stream
	orderer = Reorderer(lateness=LATENESS, order="event_time")
	released = []
	for event in arrivals:
		for out in orderer.push(event):
			watermark = orderer.watermark(out.company)
			assert out.late or out.event_time <= watermark, "released only once the watermark passed it"
			released.append(out)
	released += orderer.flush()
	assert sorted(e.event_id for e in released) == sorted({e.event_id for e in arrivals})
	for company in COMPANIES:
		times = [e.event_time for e in released if e.company == company and not e.late]
		assert times == sorted(times)


def test_late_events_can_be_dropped_instead():
	orderer = Reorderer(lateness=LATENESS, late="drop", first_sequence=1)
	out = push_all(orderer, [make_event("A", 2), make_event("A", 30)])  # 1 is missing; 30 passes 2
	assert [e.sequence for e in out] == [2]
	assert orderer.gaps("A") == [1]
	assert orderer.push(make_event("A", 1)) == [] and orderer.stats["dropped_late"] == 1


def test_joining_mid_stream_starts_from_the_first_released_sequence():
	orderer = Reorderer(lateness=LATENESS)  # first_sequence unknown
	assert orderer.push(make_event("A", 101)) == []  # could 100 still come? wait for the watermark
	assert [e.sequence for e in orderer.push(make_event("A", 100))] == []
	out = orderer.push(make_event("A", 120))
	assert [e.sequence for e in out] == [100, 101] and orderer.gaps("A") == []
	assert [e.sequence for e in orderer.flush()] == [120]
	assert orderer.gaps("A") == list(range(102, 120))


def test_a_bounded_dedup_forgets_the_oldest_ids():
	dedup = Deduplicator(capacity=3)
	assert [dedup.seen(i) for i in "abcab"] == [False, False, False, True, True]
	dedup.seen("d")  # forgets "c", the least recently seen
	assert len(dedup) == 3 and dedup.seen("c") is False


def test_the_waiting_buffer_is_bounded():
	orderer = Reorderer(lateness=timedelta(days=1), first_sequence=1, max_waiting=5)
	out = push_all(orderer, [make_event("A", s) for s in range(2, 12)])
	assert len(out) >= 10 - 5 and out[0].sequence == 2 and orderer.gaps("A") == [1]


@pytest.mark.parametrize("kwargs", [{"order": "random"}, {"late": "raise"}])
def test_bad_options_are_refused(kwargs):
	with pytest.raises(ValueError):
		Reorderer(**kwargs)


def test_a_backlog_read_one_partition_after_another_makes_nothing_late():
	"""Partition 1 holds the odd sequence numbers, partition 2 the even ones; the reader
	catches up on partition 1 first. Without a horizon the watermark runs ahead on
	partition 1 and gives up the even numbers; with it they wait for partition 2."""
	odd = [make_event("A", s) for s in range(1, 60, 2)]
	even = [make_event("A", s) for s in range(2, 61, 2)]

	naive = Reorderer(lateness=LATENESS, first_sequence=1)
	out = push_all(naive, odd) + push_all(naive, even) + naive.flush()
	assert any(e.late for e in out), "the problem the horizon solves"

	orderer = Reorderer(lateness=LATENESS, first_sequence=1)
	out = []
	for event in odd:  # partition 2 not read yet: its position is unknown
		out += orderer.push(event)
		out += orderer.advance(datetime.min.replace(tzinfo=timezone.utc) + timedelta(days=366))
	for event in even:  # partition 1 caught up: the horizon is partition 2's position
		out += orderer.push(event)
		out += orderer.advance(event.event_time)
	out += orderer.advance(None) + orderer.flush()
	assert [e.sequence for e in out] == list(range(1, 61)) and not any(e.late for e in out)
	assert orderer.gaps("A") == []


def test_in_sequence_order_the_wait_follows_capture_time_not_business_time():
	"""A cancellation's reversal rows carry the original posting time: business time goes
	back, capture time (emitted_at) does not. A back-dated successor must not make the
	orderer give up its missing predecessor."""
	orderer = Reorderer(lateness=LATENESS, first_sequence=1)
	first = make_event("A", 1)
	reversal = Event.from_record(
		{**make_event("A", 3).record, "event_time": T0 - timedelta(days=3)}, 3
	)  # posted three days ago, captured now
	out = push_all(orderer, [first, reversal])
	assert [e.sequence for e in out] == [1], "3 waits for 2"
	out = orderer.push(make_event("A", 2))
	assert [e.sequence for e in out] == [2, 3] and orderer.stats["late"] == 0
