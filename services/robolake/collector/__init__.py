"""The collector: what capture devices talk to.

Stateless HTTP replicas (aiohttp) that authenticate devices, validate episode data against the
episode contract, and acknowledge a chunk only once Kafka holds it with ``acks=all``. Any replica
can serve any request: registration returns a signed upload ticket that later requests carry.
"""
