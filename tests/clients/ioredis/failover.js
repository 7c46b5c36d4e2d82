// ioredis in Sentinel mode with `failoverDetector: true`: besides asking the sentinels for
// the master when it connects, it subscribes to `+switch-master` on every sentinel and, when
// a message arrives, drops its connection and asks the sentinels again. Driven by
// tests/sentinel.rs, which gives the nodes' Sentinel ports as sentinels.
//
// Usage: node failover.js NAME HOST:PORT... ; then, on stdin, one command a line:
//   write KEY   SET KEY through the client; prints "wrote KEY ADDR" or "failed KEY ERROR"
//   quit        disconnects and exits 0
// Prints one line per client event: "ready ADDR" (connected to the master at ADDR, after
// the ready check), "subscribed" (the failover detector listens on every sentinel), "close",
// "error MESSAGE". Exits 1 after 60 s whatever happens, so that it can never hang a test.
"use strict";

const readline = require("readline");
const Redis = require("ioredis");

const [name, ...sentinelArgs] = process.argv.slice(2);
const sentinels = sentinelArgs.map((s) => {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
});

const deadline = setTimeout(() => {
  console.log("timeout");
  process.exit(1);
}, 60000);

const redis = new Redis({
  name,
  sentinels,
  failoverDetector: true,
  // Commands never wait for a reconnection: a write either goes through now or fails.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
});

const where = () =>
  redis.stream ? `${redis.stream.remoteAddress}:${redis.stream.remotePort}` : "none";

redis.on("ready", () => console.log(`ready ${where()}`));
redis.on("failoverSubscribed", () => console.log("subscribed"));
redis.on("close", () => console.log("close"));
redis.on("error", (e) => console.log(`error ${e.message}`));

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  const [cmd, key] = line.trim().split(" ");
  if (cmd === "write") {
    try {
      await redis.set(key, "ioredis");
      console.log(`wrote ${key} ${where()}`);
    } catch (e) {
      console.log(`failed ${key} ${e.message}`);
    }
  } else if (cmd === "quit") {
    clearTimeout(deadline);
    redis.disconnect();
    process.exit(0);
  }
});
