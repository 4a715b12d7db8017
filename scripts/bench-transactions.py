#!/usr/bin/env python3
# Transactional throughput through confluent-kafka (librdkafka 2.16) against a broker on
# 127.0.0.1:19093:  .venv/bin/python scripts/bench-transactions.py TRANSACTIONS RECORDS_PER_TXN
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
n_txn, per = int(sys.argv[1]), int(sys.argv[2])
a = AdminClient({"bootstrap.servers": "127.0.0.1:19093"})
t = "txbench-%d" % per
a.create_topics([NewTopic(t, 1, 1)])[t].result()
p = Producer({"bootstrap.servers": "127.0.0.1:19093", "transactional.id": t, "linger.ms": 5, "batch.size": 1000000})
p.init_transactions(30)
v = b"x" * 100
lat = []
t0 = time.time()
for _ in range(n_txn):
    p.begin_transaction()
    for _ in range(per):
        p.produce(t, v)
    c0 = time.time(); p.commit_transaction(60); lat.append(time.time() - c0)
el = time.time() - t0
lat.sort()
print("python confluent-kafka: %d txns of %d: %.0f msgs/s, %.0f txn/s, commit p50 %.2f ms p99 %.2f ms" % (n_txn, per, n_txn*per/el, n_txn/el, lat[len(lat)//2]*1000, lat[int(len(lat)*0.99)]*1000))
