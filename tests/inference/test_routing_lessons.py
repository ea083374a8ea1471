"""The one rule by which a relay teaches routing (inference/routing_lessons.py), used by every path that relays."""

from decimal import Decimal

from inference.metering import Delivery
from inference.node_client import NodeCallError
from inference.routing import Candidate
from inference.routing_lessons import lessons


def candidate(node_id: int) -> Candidate:
    return Candidate(node_id, 1, "http://node", "", Decimal(1), Decimal(1))


def test_a_clean_answer_teaches_its_first_byte_latency_and_no_failure():
    delivery = Delivery(candidate=candidate(7), started=True, first_byte_ms=42)

    assert (lessons(delivery).failed, lessons(delivery).latency) == ((), (7, 42))


def test_nodes_that_failed_over_cool_down_and_the_answering_one_teaches_its_latency():
    down = NodeCallError("node_unreachable", "down")
    delivery = Delivery(candidate=candidate(3), started=True, first_byte_ms=9, failures=[(1, down), (2, down)])

    assert (lessons(delivery).failed, lessons(delivery).latency) == ((1, 2), (3, 9))


def test_a_node_that_broke_mid_stream_cools_down_once_and_teaches_no_latency():
    broke = NodeCallError("upstream_broken", "cut", retryable=False)
    delivery = Delivery(candidate=candidate(5), started=True, first_byte_ms=3, error=broke, failures=[(5, broke)])

    assert (lessons(delivery).failed, lessons(delivery).latency) == ((5,), None)


def test_a_request_the_node_refused_for_its_own_fault_teaches_nothing():
    refused = NodeCallError("upstream_rejected", "bad request", retryable=False, node_fault=False)
    delivery = Delivery(candidate=candidate(5), error=refused, failures=[(4, refused)])

    assert (lessons(delivery).failed, lessons(delivery).latency) == ((), None)


def test_a_client_that_left_after_the_first_byte_still_measured_the_nodes_latency():
    delivery = Delivery(candidate=candidate(6), started=True, first_byte_ms=11, client_gone=True)

    assert lessons(delivery).latency == (6, 11)
