"""The link's liveness and linger policy, sans-IO (no sockets, no clocks): times are passed in."""

from __future__ import annotations

import math

from mpcactors.link._liveness import Linger, Liveness


def _liveness(now: float = 100.0) -> Liveness:
    return Liveness(heartbeat_interval_s=1.0, peer_timeout_s=10.0, connect_timeout_s=30.0, now=now)


def test_an_open_connection_is_pinged_every_interval_and_a_closed_one_is_not():
    lv = _liveness()
    tick = lv.tick(101.0, connection_open=True)
    assert tick.ping and not tick.drop and tick.next_at == 102.0
    tick = lv.tick(102.0, connection_open=False)
    assert not tick.ping and not tick.drop and tick.next_at == 103.0


def test_a_connection_silent_past_the_silence_limit_is_dropped_and_hearing_the_peer_saves_it():
    lv = _liveness()
    assert lv.silence_s == 5.0  # max(3 heartbeats, peer_timeout / 2)
    lv.established(100.0)
    assert not lv.tick(105.0, connection_open=True).drop  # exactly at the limit: not yet
    tick = lv.tick(105.5, connection_open=True)
    assert tick.drop and tick.ping and tick.silent_s == 5.5
    lv.heard(105.2)
    assert not lv.tick(105.5, connection_open=True).drop
    assert not lv.tick(200.0, connection_open=False).drop  # no connection: nothing to drop


def test_heard_never_moves_back():
    # The I/O thread reports its own last-received time, which may be older than the loop's.
    lv = _liveness()
    lv.heard(150.0)
    lv.heard(120.0)
    assert lv.last_heard == 150.0


def test_a_busy_loop_is_not_silence_when_the_io_thread_heard_the_peer():
    # The loop was blocked 60 s; the I/O thread kept receiving keepalives meanwhile.
    lv = _liveness()
    lv.established(100.0)
    lv.heard(159.5)  # the I/O thread's last_received, read when the loop wakes
    assert not lv.tick(160.0, connection_open=True).drop
    assert lv.obtain_deadline(given_up=False) == 169.5


def test_deadlines_to_connect_first_and_to_reconnect_afterwards():
    lv = _liveness(now=100.0)
    assert lv.obtain_deadline(given_up=False) == 130.0  # connect_timeout_s from the start
    lv.established(140.0)
    assert lv.ever_connected
    assert lv.obtain_deadline(given_up=False) == 150.0  # last_heard + peer_timeout_s
    lv.heard(147.0)
    assert lv.obtain_deadline(given_up=False) == 157.0
    assert lv.obtain_deadline(given_up=True) == math.inf  # background retries of a lost peer


def test_linger_asks_for_an_ack_at_once_then_every_tenth_of_a_second_until_delivered():
    linger = Linger(10.0, linger_s=2.0)
    steps = [linger.step(10.0 + i * Linger.POLL_S, undelivered=True, connection_open=True) for i in range(41)]
    assert not any(s.done for s in steps)
    assert [i for i, s in enumerate(steps) if s.ping] == [0, 20, 40]
    done = linger.step(10.3, undelivered=False, connection_open=True)
    assert done.done and not done.ping


def test_linger_gives_up_at_its_deadline_and_does_not_ping_without_a_connection():
    linger = Linger(10.0, linger_s=0.5)
    step = linger.step(10.2, undelivered=True, connection_open=False)
    assert not step.done and not step.ping
    assert linger.step(10.5, undelivered=True, connection_open=True).done
    assert Linger(0.0, linger_s=0.0).step(0.0, undelivered=True, connection_open=True).done


def test_the_goodbye_wait_is_bounded_between_a_fifth_of_a_second_and_one_second():
    assert Linger(0.0, 0.0).goodbye_s == 0.2
    assert Linger(0.0, 0.5).goodbye_s == 0.5
    assert Linger(0.0, 30.0).goodbye_s == 1.0
