"""Kafka clients shared by the services: one producer lifecycle (:mod:`robolake.kafka.producer`).

The collector's record sink and the writer's dead-letter sink both produce durably; they used to
build their own aiokafka producers and drifted apart (only one renewed its producer after a fatal
idempotence error). Whatever a producer must do to stay healthy now lives here once.
"""
