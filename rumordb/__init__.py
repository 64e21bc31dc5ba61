"""RumorDB: a peer-to-peer, eventually consistent key-value store.

The repository's top-level folders are this package's subpackages (``rumordb/core`` and
the others are links to them), so one distribution installs one name:

* ``rumordb.core``: the sans-I/O protocol core;
* ``rumordb.live``: the live node (FastAPI, gossip, discovery, storage);
* ``rumordb.sim``: the SimPy simulator (its plotting libraries are the ``sim`` extra);
* ``rumordb.cli``: the ``rumor`` command.
"""

__version__ = "0.2.0"
