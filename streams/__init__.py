"""The Kafka layer: the only package that imports faust or aiokafka."""
