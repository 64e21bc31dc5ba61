"""The constants of the live send path that the simulator models, and where they came from.

Service times (``sim.service``: each node's event loop is one server). A post costs its
receiver ``post_cost_us`` plus ``message_cost_us`` per message plus ``update_cost_us``
per version it carries, and its sender ``send_post_cost_us`` plus
``send_message_cost_us`` per message (seal, HTTP client, response); a client write costs
its node ``write_cost_us``. Under ``sync`` durability a client write also waits for a
group commit of ``commit_cost_us`` (the disk's, not the loop's). ``wakeup_us`` are
quantiles of how late a sleeping event loop gets the CPU on the machine at hand (0 on an
idle one): a server that was idle starts its next work one draw of them late.
``service_spread`` are quantiles of one post's CPU on the node over their mean: every
job's cost is its constant times one draw of them (none: the constant, every time).
A post's receiver also pays ``member_cost_us`` per membership entry its messages carry
(a live message piggybacks the sender's view of every member).

Beside the protocol (``sim.posts.SideWork``): a node's own timers and discovery cost its
loop ``background_cost_us_per_s`` (a lone node's CPU at rest); an observer (the compare
driver) costs each node ``watch_cost_us`` per version it applies (its watch line) and
``metrics_cost_us`` per ``/metrics`` sample, and itself ``observer_event_cost_us`` per
watch line read, ``observer_sample_cost_us`` per sample and ``observer_write_cost_us``
per client write it sends. ``cores``: the machine's cores, which every node and the
observer share (``sim.service``; 0: a core per node). ``startup_ms``: how long a new
node process takes to serve (Python, imports, the disk loaded): a node restarted by a
``restart`` fault is up that much after the fault's instant (0: at once; churn, which
has no live twin, restarts at once).

Framing: a post carries bytes around its messages' bytes: the ``Envelope`` (a fixed part
and a part per message), the seal (header, ids, MAC) and the HTTP request head.

``rumor sim calibrate`` measures them on the machine at hand (``live.calibrate``) and
writes them with a description of that machine; the simulator reads the committed default
(``sim/calibration.toml``) unless a scenario or a command names another file. Fields a
file leaves out are 0 (a file from before the service model: no such cost).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_CALIBRATION = Path(__file__).with_name("calibration.toml")


class Constants(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    post_cost_us: float  # receiver CPU per POST /gossip, whatever it carries
    message_cost_us: float  # receiver CPU per message in it
    update_cost_us: float = 0.0  # receiver CPU per version (update) those messages carry
    send_post_cost_us: float = 0.0  # sender CPU per post: seal, HTTP client, response
    send_message_cost_us: float = 0.0  # sender CPU per message in it
    write_cost_us: float = 0.0  # CPU of one client write (PUT) at its node
    commit_cost_us: float = 0.0  # one durable group commit (sync durability: fsync)
    wakeup_us: list[float] = msgspec.field(default_factory=list)  # loop lateness quantiles
    # one job's cost over the mean cost, quantiles (files from before it: none)
    service_spread: list[float] = msgspec.field(default_factory=list)
    member_cost_us: float = 0.0  # receiver CPU per membership entry the messages carry
    background_cost_us_per_s: float = 0.0  # a node's CPU per second at rest (timers)
    watch_cost_us: float = 0.0  # node CPU per version applied, per watch stream open
    metrics_cost_us: float = 0.0  # node CPU per GET /metrics
    observer_event_cost_us: float = 0.0  # observer CPU per watch line it reads
    observer_sample_cost_us: float = 0.0  # observer CPU per /metrics sample it takes
    observer_write_cost_us: float = 0.0  # observer CPU per client write it sends
    cores: int = 0  # the machine's cores, shared by every node and the observer
    startup_ms: float = 0.0  # wall time from a node's exec to its first answer (restarts)
    envelope_post_bytes: int  # the Envelope's own bytes (array head, sender, list head)
    envelope_message_bytes: int  # per message: its msgpack bin head
    seal_bytes: int  # the seal's header and MAC, without the two node ids
    http_head_bytes: int  # request head to a loopback host, without the sender id and
    # the Content-Length digits (not in the /metrics gossip bytes)

    def sealed_bytes(self, payload_bytes: int, messages: int, sender: str, recipient: str) -> int:
        """The length of a sealed post body (what ``/metrics`` counts as gossip bytes):
        the sender's id is in the seal and in the envelope, the recipient's in the seal."""
        ids = 2 * len(sender.encode()) + len(recipient.encode())
        envelope = self.envelope_post_bytes + self.envelope_message_bytes * messages
        return payload_bytes + envelope + self.seal_bytes + ids

    def receive_s(self, messages: int, updates: int, members: int = 0) -> float:
        """The receiver's service time for one post."""
        us = self.post_cost_us + self.message_cost_us * messages + self.update_cost_us * updates
        return (us + self.member_cost_us * members) / 1e6

    def send_s(self, messages: int) -> float:
        """The sender's service time for one post."""
        return (self.send_post_cost_us + self.send_message_cost_us * messages) / 1e6

    def write_s(self) -> float:
        """A client write's service time at its node (one version)."""
        return self.write_cost_us / 1e6


class Calibration(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    constants: Constants
    machine: dict[str, Any]  # platform, cpu, python, cores, load, when, command
    source: str = ""  # the file it was read from


def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in ``path`` (the committed default when None)."""
    chosen = path or DEFAULT_CALIBRATION
    try:
        data = tomllib.loads(chosen.read_text())
        calibration = msgspec.convert(data, Calibration)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"calibration {chosen}: {exc}") from exc
    return msgspec.structs.replace(calibration, source=str(chosen))


def to_toml(calibration: Calibration) -> str:
    """The file ``rumor sim calibrate`` writes (flat tables of numbers and strings)."""
    lines = ["# written by `rumor sim calibrate`; see sim/calibration.py", "", "[constants]"]
    for name, value in msgspec.structs.asdict(calibration.constants).items():
        lines.append(f"{name} = {value!r}")
    lines += ["", "[machine]"]
    for name, value in sorted(calibration.machine.items()):
        lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(calibration: Calibration) -> dict[str, Any]:
    """What a report records: the constants, the machine, the file."""
    return {
        "constants": msgspec.structs.asdict(calibration.constants),
        "machine": calibration.machine,
        "source": _shown(calibration.source),
    }


def _shown(source: str) -> str:
    """A file under the working directory by its relative path: reports are committed, and
    a checkout's absolute path means nothing on another machine."""
    path = Path(source)
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else source
    except ValueError:
        return source
