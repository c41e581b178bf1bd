"""Synthetic session events shaped like the reference dataset: a seeded, shuffled model rendered as JSON Lines."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.core.instants import parse_instant

# 249 ISO 3166-1 alpha-2 codes minus three uninhabited territories (AQ, BV, HM) = 246, the
# number of distinct countries in the reference file. "NA" (Namibia) stays: parsers must not
# read it as null.
COUNTRIES: tuple[str, ...] = tuple(
    """
    AD AE AF AG AI AL AM AO AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT
    MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS
    PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF
    WS YE YT ZA ZM ZW
    """.split()
)
# Non-code values one analysis found in the reference file; used only for malformed lines.
BAD_COUNTRIES = ("Code", "(.uk)")

MAX_SESSIONS_PER_PLAYER = 50
# Players' complete-session counts follow k^-1.2 on 1..50: 30% of players play once, the mean
# is ~8.5 and 0.3% reach the cap, so a million events give ~59k players, ~160 of them at 50.
_SESSIONS_CUM_WEIGHTS = list(itertools.accumulate(k**-1.2 for k in range(1, MAX_SESSIONS_PER_PLAYER + 1)))
# Per-million rates of incomplete sessions in the reference file (2 start-only, 3 end-only).
_START_ONLY_PER_EVENT = 2e-6
_END_ONLY_PER_EVENT = 3e-6
# Session length: log-normal, median 10 minutes, capped at 4 hours.
_LENGTH_MU = math.log(600)
_LENGTH_SIGMA = 1.0
MAX_SESSION_SECONDS = 4 * 3600
# A player usually plays from one country; a few sessions come from elsewhere (travel, VPN).
_TRAVEL_RATE = 0.02
_DAY = 86_400
_MISSING = -(1 << 62)  # the absent half of an incomplete session (any real second is larger)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

_START_LINE = '{"player_id": "%s", "country": "%s", "event": "start", "session_id": "%s", "ts": "%s"}'
_END_LINE = '{"player_id": "%s", "event": "end", "session_id": "%s", "ts": "%s"}'

# Malformed-line flavours, picked uniformly; each value is (name, how many variants it has).
_FLAWS = (("json", 3), ("missing", 4), ("uuid", 3), ("country", len(BAD_COUNTRIES)))


# The reference file's span, and the demo clock's "now" (config.toml) that the edge cases straddle.
DEFAULT_START = parse_instant("2016-11-02T00:00:00")
DEFAULT_END = parse_instant("2016-12-01T22:05:30")
DEFAULT_NOW = parse_instant("2016-12-01T00:00:00")


@dataclass(frozen=True, slots=True)
class GenOptions:
    """What to generate. Rates are fractions of `events`; the rest are ordinary events."""

    events: int = 1_001_169
    seed: int = 2016
    start: dt.datetime = DEFAULT_START
    end: dt.datetime = DEFAULT_END
    duplicate_rate: float = 0.0
    old_rate: float = 0.0
    future_rate: float = 0.0
    malformed_rate: float = 0.0
    # The server's "now" and its rules, so "old" and "future" lines fall clearly outside them.
    now: dt.datetime = DEFAULT_NOW
    retention_days: int = 365
    max_future_hours: float = 24.0

    def check(self) -> None:
        """Raise ValueError naming the first option that makes no sense."""
        if self.events < 0:
            raise ValueError("--events must not be negative")
        if self.end.timestamp() - self.start.timestamp() < 2:
            raise ValueError("--end must be at least two seconds after --start")
        rates = {
            "--duplicate-rate": self.duplicate_rate,
            "--old-rate": self.old_rate,
            "--future-rate": self.future_rate,
            "--malformed-rate": self.malformed_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0:
            raise ValueError("the edge-case rates add up to more than 1")


@dataclass(frozen=True, slots=True)
class GenSummary:
    """Counts describing a generated data set."""

    events: int
    starts: int
    ends: int
    sessions: int
    complete: int
    start_only: int
    end_only: int
    players: int
    countries: int
    duplicates: int
    old: int
    future: int
    malformed: int
    first_ts: str
    last_ts: str


class _Sessions:
    """Column-wise session table: a million events cost a few small arrays, not a million dicts."""

    __slots__ = ("player", "country", "session_id", "start", "end")

    def __init__(self) -> None:
        self.player = array("l")
        self.country = array("H")
        self.session_id: list[str] = []
        self.start = array("q")
        self.end = array("q")

    def add(self, player: int, country: int, session_id: str, start: int, end: int) -> int:
        self.player.append(player)
        self.country.append(country)
        self.session_id.append(session_id)
        self.start.append(start)
        self.end.append(end)
        return len(self.session_id) - 1


def _uuid4(rng: random.Random) -> int:
    """A version-4 UUID as an int, drawn from the seeded generator (uuid4() is not reproducible)."""
    value = rng.getrandbits(128)
    value &= ~(0xF000 << 64) & ~(0xC000 << 48)
    return value | (0x4000 << 64) | (0x8000 << 48)


def _dashed(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Dataset:
    """A generated data set: sessions plus a shuffled order of event codes (session index * 2 + is_end)."""

    __slots__ = ("summary", "_players", "_player_country", "_sessions", "_order", "_flaws", "_dates")

    def __init__(self, options: GenOptions) -> None:
        options.check()
        rng = random.Random(options.seed)
        self._players: list[str] = []
        self._player_country: list[int] = []  # each player's usual country
        self._sessions = _Sessions()
        self._flaws: dict[int, tuple[str, int]] = {}
        self._dates: dict[int, str] = {}
        counts = _budget(options)
        base = self._base_sessions(rng, options, counts)
        duplicates = min(counts["duplicates"], len(base))
        self.summary = self._summarise(base, counts, duplicates)
        # The ordinary events, copies of some of them, then the other edge cases; all shuffled.
        order = base
        order.extend([base[rng.randrange(len(base))] for _ in range(duplicates)])
        order.extend(self._old_and_future(rng, options, counts))
        order.extend(self._malformed(rng, options, counts["malformed"]))
        # Shuffling the array in place is faster than a list (and 8 bytes per event, not 36).
        rng.shuffle(order)
        self._order = order

    # -- building ---------------------------------------------------------------------------

    def _new_player(self, rng: random.Random) -> int:
        self._players.append(f"{_uuid4(rng):032x}")
        self._player_country.append(rng.randrange(len(COUNTRIES)))
        return len(self._players) - 1

    def _country_for(self, rng: random.Random, player: int) -> int:
        return rng.randrange(len(COUNTRIES)) if rng.random() < _TRAVEL_RATE else self._player_country[player]

    def _base_sessions(
        self, rng: random.Random, options: GenOptions, counts: dict[str, int]
    ) -> array[int]:
        """Complete sessions per player, then the few start-only and end-only ones; returns event codes."""
        lo, hi = _epoch(options.start), _epoch(options.end)
        codes = array("l")
        remaining = counts["complete"]
        while remaining > 0:
            wanted = rng.choices(range(1, MAX_SESSIONS_PER_PLAYER + 1), cum_weights=_SESSIONS_CUM_WEIGHTS)[0]
            sessions = min(wanted, remaining)
            remaining -= sessions
            player = self._new_player(rng)
            # `hi` is exclusive: every event, ends included, falls before it.
            starts = sorted(rng.randrange(lo, hi - 1) for _ in range(sessions))
            for i, start in enumerate(starts):
                # Keep a player's sessions from overlapping (except on a rare same-second draw).
                limit = min(MAX_SESSION_SECONDS, hi - 1 - start)
                if i + 1 < sessions:
                    limit = min(limit, starts[i + 1] - start - 1)
                length = max(1, min(_session_length(rng), limit))
                index = self._sessions.add(
                    player, self._country_for(rng, player), _dashed(_uuid4(rng)), start, start + length
                )
                codes.append(index * 2)
                codes.append(index * 2 + 1)
        # Start-only sessions were still open when the file was cut; end-only ones began before it.
        for _ in range(counts["start_only"]):
            player = self._any_player(rng)
            start = rng.randrange(max(lo, hi - MAX_SESSION_SECONDS), hi)
            index = self._sessions.add(
                player, self._country_for(rng, player), _dashed(_uuid4(rng)), start, _MISSING
            )
            codes.append(index * 2)
        for _ in range(counts["end_only"]):
            player = self._any_player(rng)
            end = rng.randrange(lo, min(hi, lo + MAX_SESSION_SECONDS))
            index = self._sessions.add(player, self._player_country[player], _dashed(_uuid4(rng)), _MISSING, end)
            codes.append(index * 2 + 1)
        return codes

    def _any_player(self, rng: random.Random) -> int:
        if self._players:
            return rng.randrange(len(self._players))
        return self._new_player(rng)

    def _old_and_future(
        self, rng: random.Random, options: GenOptions, counts: dict[str, int]
    ) -> list[int]:
        """Sessions clearly past retention or beyond the allowed future, as start/end pairs."""
        now = _epoch(options.now)
        retention = options.retention_days * _DAY
        future = int(options.max_future_hours * 3600)
        windows = (
            (counts["old"], now - retention - 365 * _DAY, now - retention - _DAY),
            (counts["future"], now + future + 3600, now + future + 30 * _DAY),
        )
        codes: list[int] = []
        for count, lo, hi in windows:
            for pair in range(0, count, 2):
                player = self._any_player(rng)
                start = rng.randrange(lo, hi)
                end = start + max(1, min(_session_length(rng), MAX_SESSION_SECONDS))
                index = self._sessions.add(
                    player, self._country_for(rng, player), _dashed(_uuid4(rng)), start, end
                )
                codes.append(index * 2)
                if pair + 1 < count:
                    codes.append(index * 2 + 1)
        return codes

    def _malformed(
        self, rng: random.Random, options: GenOptions, count: int
    ) -> list[int]:
        """One-event sessions whose line is broken in one of a few ways (see `_render_flawed`)."""
        lo, hi = _epoch(options.start), _epoch(options.end)
        codes: list[int] = []
        for _ in range(count):
            player = self._any_player(rng)
            start = rng.randrange(lo, hi)
            index = self._sessions.add(
                player, self._player_country[player], _dashed(_uuid4(rng)), start, min(hi - 1, start + 600)
            )
            name, variants = _FLAWS[rng.randrange(len(_FLAWS))]
            self._flaws[index] = (name, rng.randrange(variants))
            is_end = 0 if name == "country" else rng.randrange(2)
            codes.append(index * 2 + is_end)
        return codes

    def _summarise(self, base: array[int], counts: dict[str, int], duplicates: int) -> GenSummary:
        sessions = self._sessions
        ends = sum(code & 1 for code in base)
        # Only ordinary sessions exist yet, so their extremes are the data set's time range.
        stamps = itertools.chain(sessions.start, sessions.end)
        first = min((stamp for stamp in stamps if stamp != _MISSING), default=_MISSING)
        last = max(itertools.chain(sessions.start, sessions.end), default=_MISSING)
        players = {sessions.player[code >> 1] for code in base}
        countries = {sessions.country[code >> 1] for code in base if not code & 1}
        edge = counts["old"] + counts["future"] + counts["malformed"]
        return GenSummary(
            events=len(base) + edge + duplicates,
            starts=len(base) - ends,
            ends=ends,
            sessions=counts["complete"] + counts["start_only"] + counts["end_only"],
            complete=counts["complete"],
            start_only=counts["start_only"],
            end_only=counts["end_only"],
            players=len(players),
            countries=len(countries),
            duplicates=duplicates,
            old=counts["old"],
            future=counts["future"],
            malformed=counts["malformed"],
            first_ts=self._format_ts(first) if first != _MISSING else "",
            last_ts=self._format_ts(last) if last != _MISSING else "",
        )

    # -- rendering --------------------------------------------------------------------------

    def lines(self) -> Iterator[str]:
        """The data set as JSON Lines (no trailing newline), in the shuffled order; repeatable."""
        sessions, players, flaws = self._sessions, self._players, self._flaws
        for code in self._order:
            index, is_end = code >> 1, code & 1
            if flaws and index in flaws:
                yield self._render_flawed(index, is_end, flaws[index])
                continue
            player = players[sessions.player[index]]
            if is_end:
                yield _END_LINE % (player, sessions.session_id[index], self._format_ts(sessions.end[index]))
            else:
                country = COUNTRIES[sessions.country[index]]
                ts = self._format_ts(sessions.start[index])
                yield _START_LINE % (player, country, sessions.session_id[index], ts)

    def _fields(self, index: int, is_end: int) -> dict[str, str]:
        sessions = self._sessions
        fields = {"player_id": self._players[sessions.player[index]]}
        if not is_end:
            fields["country"] = COUNTRIES[sessions.country[index]]
        fields["event"] = "end" if is_end else "start"
        fields["session_id"] = sessions.session_id[index]
        fields["ts"] = self._format_ts(sessions.end[index] if is_end else sessions.start[index])
        return fields

    def _render_flawed(self, index: int, is_end: int, flaw: tuple[str, int]) -> str:
        name, variant = flaw
        fields = self._fields(index, is_end)
        if name == "missing":
            del fields[("player_id", "event", "session_id", "ts")[variant]]
        elif name == "uuid":
            sid = fields["session_id"]
            fields["session_id"] = (sid[:-2], sid.replace("-", "z", 1), "not-a-uuid")[variant]
        elif name == "country":
            fields["country"] = BAD_COUNTRIES[variant]
        line = json.dumps(fields)
        if name == "json":
            # Cut inside the timestamp, a trailing comma, or single quotes: all fail to decode, and
            # each keeps the session id, so no two malformed lines are alike.
            return (line[:-10], line[:-1] + ", }", line.replace('"', "'"))[variant]
        return line

    def _format_ts(self, seconds: int) -> str:
        day, rest = divmod(seconds, _DAY)
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{date}T{hours:02d}:{minutes:02d}:{secs:02d}"


def _budget(options: GenOptions) -> dict[str, int]:
    """Split `events` into edge-case lines and ordinary ones, and the ordinary ones into sessions."""
    n = options.events
    counts = {
        "duplicates": round(n * options.duplicate_rate),
        "old": round(n * options.old_rate),
        "future": round(n * options.future_rate),
        "malformed": round(n * options.malformed_rate),
    }
    base = max(0, n - sum(counts.values()))
    start_only = round(base * _START_ONLY_PER_EVENT)
    end_only = round(base * _END_ONLY_PER_EVENT)
    if (base - start_only - end_only) % 2:
        end_only += 1  # complete sessions take two events; the odd one out is an end-only session
    counts.update(start_only=start_only, end_only=end_only, complete=(base - start_only - end_only) // 2)
    return counts


def _session_length(rng: random.Random) -> int:
    return int(rng.lognormvariate(_LENGTH_MU, _LENGTH_SIGMA))


def _epoch(value: dt.datetime) -> int:
    return int(value.timestamp())


def build_dataset(options: GenOptions) -> Dataset:
    """Build the whole data set in memory (compact: ~100 bytes per event) from the seed."""
    return Dataset(options)


def generate(options: GenOptions) -> Iterator[str]:
    """The JSON Lines of a data set, without trailing newlines."""
    return build_dataset(options).lines()
