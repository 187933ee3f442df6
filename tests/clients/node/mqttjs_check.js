#!/usr/bin/env node
// MQTT.js (the `mqtt` npm package, what browser dashboards and Node-RED use) against a broker
// over ws:// or wss://, for tests/websocket.rs.
//
// Usage:
//   node mqttjs_check.js roundtrip URL VERSION [CAFILE]
//       VERSION 4 (3.1.1) or 5. A subscriber and a publisher: QoS 0, 1 and 2, a 300 KB QoS 1
//       payload (many TCP segments, one WebSocket frame), a retained message for a late
//       subscriber. Prints "OK" and exits 0, or "FAIL: ..." on stderr and exits 1.
//   node mqttjs_check.js persist-sub URL ID TOPIC [CAFILE]
//       Connects with a persistent session (clean false, 5.0 session expiry 3600),
//       subscribes to TOPIC at QoS 1, prints "SUBSCRIBED session_present=<0|1>", disconnects.
//   node mqttjs_check.js persist-recv URL ID COUNT [CAFILE]
//       Resumes the session, prints "CONNACK session_present=<0|1>", then one
//       "MSG <topic> <payload>" line per message until COUNT arrived, then disconnects.
// Every wait is bounded by EDGEMQ_CLIENT_TIMEOUT seconds (default 10).

'use strict';

const fs = require('fs');
const mqtt = require('mqtt');

const TIMEOUT_MS = 1000 * Number(process.env.EDGEMQ_CLIENT_TIMEOUT || 10);

function fail(what) {
  process.stderr.write(`FAIL: ${what}\n`);
  process.exit(1);
}

function options(extra, cafile) {
  const opts = Object.assign({ reconnectPeriod: 0, connectTimeout: TIMEOUT_MS }, extra);
  if (cafile) {
    opts.ca = fs.readFileSync(cafile);
    opts.rejectUnauthorized = true;
  }
  return opts;
}

function connect(url, opts) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, opts);
    const timer = setTimeout(() => reject(new Error(`${opts.clientId}: no CONNACK`)), TIMEOUT_MS);
    client.once('connect', (connack) => {
      clearTimeout(timer);
      resolve({ client, connack });
    });
    client.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${opts.clientId}: ${e.message}`));
    });
    client.once('close', () => reject(new Error(`${opts.clientId}: closed before CONNACK`)));
  });
}

function subscribe(client, topic, qos) {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos }, (err, granted) => {
      if (err) return reject(err);
      if (!granted || granted[0].qos !== qos) {
        return reject(new Error(`${topic} granted ${JSON.stringify(granted)}`));
      }
      resolve();
    });
  });
}

function publish(client, topic, payload, opts) {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload, opts, (err) => (err ? reject(err) : resolve()));
  });
}

/// Resolves with the next `count` messages.
function collect(client, count, what) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(
      () => reject(new Error(`${what}: ${got.length} of ${count} messages arrived`)),
      TIMEOUT_MS,
    );
    const on = (topic, payload, packet) => {
      got.push({ topic, payload, qos: packet.qos, retain: packet.retain });
      if (got.length === count) {
        clearTimeout(timer);
        client.removeListener('message', on);
        resolve(got);
      }
    };
    client.on('message', on);
  });
}

function end(client) {
  return new Promise((resolve) => client.end(false, {}, resolve));
}

async function roundtrip(url, version, cafile) {
  const base = `mqttjs/${process.pid}`;
  const v = Number(version);
  const sub = (await connect(url, options({ clientId: `js-sub-${process.pid}`, protocolVersion: v }, cafile))).client;
  const pub = (await connect(url, options({ clientId: `js-pub-${process.pid}`, protocolVersion: v }, cafile))).client;
  await subscribe(sub, `${base}/#`, 2);
  const big = Buffer.alloc(300 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const arriving = collect(sub, 4, 'sub');
  for (const qos of [0, 1, 2]) await publish(pub, `${base}/q${qos}`, `qos ${qos}`, { qos });
  await publish(pub, `${base}/big`, big, { qos: 1 });
  const got = await arriving;
  for (const qos of [0, 1, 2]) {
    const m = got.find((x) => x.topic === `${base}/q${qos}`);
    if (!m || m.payload.toString() !== `qos ${qos}` || m.qos !== qos) {
      fail(`QoS ${qos}: got ${JSON.stringify(got.map((x) => [x.topic, x.qos]))}`);
    }
  }
  const m = got.find((x) => x.topic === `${base}/big`);
  if (!m || !m.payload.equals(big)) fail(`300 KB payload: got ${m ? m.payload.length : 'nothing'}`);
  await publish(pub, `${base}/retained`, 'kept', { qos: 1, retain: true });
  const late = (await connect(url, options({ clientId: `js-late-${process.pid}`, protocolVersion: v }, cafile))).client;
  const retained = collect(late, 1, 'late');
  await subscribe(late, `${base}/retained`, 1);
  const [r] = await retained;
  if (r.payload.toString() !== 'kept' || !r.retain) fail(`retained: ${JSON.stringify(r)}`);
  await publish(pub, `${base}/retained`, '', { qos: 1, retain: true });
  await Promise.all([end(sub), end(pub), end(late)]);
  console.log('OK');
}

async function persistSub(url, id, topic, cafile) {
  const opts = options(
    { clientId: id, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } },
    cafile,
  );
  const { client, connack } = await connect(url, opts);
  await subscribe(client, topic, 1);
  console.log(`SUBSCRIBED session_present=${connack.sessionPresent ? 1 : 0}`);
  await end(client);
}

async function persistRecv(url, id, count, cafile) {
  const opts = options(
    { clientId: id, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } },
    cafile,
  );
  // Queued messages may arrive right behind the CONNACK: listen before connecting.
  const client = mqtt.connect(url, opts);
  const got = collect(client, Number(count), id);
  const timer = setTimeout(() => fail(`${id}: no CONNACK`), TIMEOUT_MS);
  client.once('error', (e) => fail(`${id}: ${e.message}`));
  client.once('connect', (connack) => {
    clearTimeout(timer);
    console.log(`CONNACK session_present=${connack.sessionPresent ? 1 : 0}`);
  });
  for (const m of await got) console.log(`MSG ${m.topic} ${m.payload.toString()}`);
  await end(client);
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  switch (mode) {
    case 'roundtrip':
      return roundtrip(args[0], args[1], args[2]);
    case 'persist-sub':
      return persistSub(args[0], args[1], args[2], args[3]);
    case 'persist-recv':
      return persistRecv(args[0], args[1], args[2], args[3]);
    default:
      return fail(`unknown mode ${mode}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => fail(e.message),
);
