// Many js-libp2p kad-dht peers in one Node process, driven over JSON lines: the js part of
// the parsec testbed (the Go program speaks the same control protocol).
//
//   node --import ./polyfill.mjs peers.mjs --peers N [--host 127.0.0.1]
//        [--protocol-prefix /ipfs] [--seed S] [--latency FILE] [--port P]
//
// Every peer: TCP + Noise + Yamux on HOST:random port (peer 0 on --port P when given), identify + ping, kad-dht in server
// mode (clientMode: false) on `<prefix>/kad/1.0.0`, k = 20, no bootstrap list, no peer
// discovery. Once all peers listen, one line goes to stdout:
//
//   {"event":"listening","peers":[{"id":"<base58>","addrs":["/ip4/…/tcp/PORT"]}, …]}
//
// (with --latency, each entry also carries "region"). Then one JSON command per stdin line,
// each with an "id" echoed in its reply, handled concurrently:
//
//   fill                {"cmd":"fill","peers":[{"id","addrs"}…],"ghosts":n,"listing":q}
//                       (the last n peers are unreachable ids, each listed by a table
//                       with probability q; default 0 and 1)
//                                      → {"peers","known","mean_rt","min_rt","max_rt","mean_standard_buckets"}
//   provide             {"cmd":"provide","peer":i,"key":"<hex multihash>","timeout_s":180}
//                                                    → {"duration_ns","error","add_provider_sent","rpcs"}
//   find_first_provider {"cmd":"find_first_provider","peer":i,"key":…,"timeout_s":60}
//                                                    → {"duration_ns","provider","error","rpcs"}
//   bootstrap           {"cmd":"bootstrap","peer":i,"peers":[{"id","addrs"}…],"timeout_s":60}
//                                                    → {"rt_size","duration_ns","error","connected"}
//                       (dial those peers, then kad-dht's own self-query + table refresh once)
//   leave               {"cmd":"leave","peer":i}       → {"offline"}
//                       (churn: the node stops, its listener closes, dials to it are refused;
//                       its key, port and the last fill list are kept)
//   rejoin              {"cmd":"rejoin","peer":i,"timeout_s":30}
//                                                    → {"rt_size","duration_ns","error","offline"}
//                       (churn: a new node with the same key on the same port, its table
//                       filled from the last fill list as fill does, then kad-dht's own
//                       self-query once, bounded by timeout_s)
//   stats               {"cmd":"stats"}                → peers, offline, routing tables, memory
//   stop                {"cmd":"stop"}                 → stops every node, exits 0 (EOF too)
//
// Replies are {"id":…,"ok":true,…} or {"id":…,"ok":false,"error":"…"}. ok:false means the
// command itself was unusable (unknown cmd, bad key, peer index out of range); an operation
// that ran but failed (a provide that threw, a lookup that timed out) answers ok:true with a
// non-empty "error", so its duration is still recorded. A command naming an offline peer
// (one that left) answers ok:false "peer i is offline".
//
// What deviates from a stock js-libp2p node, and why (all testbed-only):
// - Routing tables are filled directly by `fill` (standard k-buckets, see fillNode) instead
//   of a network refresh; the periodic self-query and table refresh are pushed out to
//   ~24.8 days (the longest setTimeout) so 1,000 peers do not flood two cores with lookups.
//   `allowQueryWithZeroPeers` lets queries start without waiting for the first self-query.
// - passthrough peer-info mapper (loopback addresses are not stripped from answers), a
//   connection allow-list for 127.0.0.0/8 (else the per-host inbound rate limit refuses
//   connections from the other peers on the same IP), the connection monitor (10 s pings
//   of every connection) disabled, and peer-store address/peer ages raised so addresses
//   learned by `fill` do not expire after 1 h.
// - Latency emulation (see installLatency / latencyTransport), only with --latency.

import './polyfill.mjs'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { TimeoutError } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { Key } from 'interface-datastore/key'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'

const K = 20
const SHA2_256 = 0x12
const RAW_CODEC = 0x55
const P2P_CODE = 421
const TCP_CODE = 6
const MAX_TIMER_MS = 2 ** 31 - 1 // longer setTimeout delays overflow to 1 ms
const AGE_FOREVER_MS = 100 * 365 * 24 * 3600 * 1000
const START_CONCURRENCY = 8
const STOP_GRACE_MS = 15_000
const KAD_PEER_TAG = 'kad-peer' // @libp2p/kad-dht KAD_PEER_TAG_NAME
const FILLED = Symbol('parsec-fill')
const BOOTSTRAP_ADMIT_WAIT_MS = 10_000 // bootstrap: wait for the dialled peers to enter the table
const TRACE = process.env.PARSEC_JS_TRACE === '1'

// ---------------------------------------------------------------------------------------
// command line

function usage (message) {
  if (message) process.stderr.write(`peers.mjs: ${message}\n`)
  process.stderr.write('usage: node --import ./polyfill.mjs peers.mjs --peers N [--host 127.0.0.1] ' +
    '[--protocol-prefix /ipfs] [--seed S] [--latency FILE] [--port P (first peer; 0: random)]\n')
  process.exit(2)
}

function parseArgs (argv) {
  const opts = { peers: null, host: '127.0.0.1', protocolPrefix: '/ipfs', seed: null, latency: null, port: '0' }
  const names = { '--peers': 'peers', '--host': 'host', '--protocol-prefix': 'protocolPrefix', '--seed': 'seed', '--latency': 'latency', '--port': 'port' }
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]
    let value
    if (arg === '-h' || arg === '--help') usage()
    const eq = arg.indexOf('=')
    if (eq > 0) { value = arg.slice(eq + 1); arg = arg.slice(0, eq) }
    const name = names[arg]
    if (name == null) usage(`unknown argument ${arg}`)
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`)
      value = argv[++i]
    }
    opts[name] = value
  }
  const n = Number(opts.peers)
  if (!Number.isInteger(n) || n < 1) usage('--peers must be a positive integer')
  opts.peers = n
  const port = Number(opts.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage('--port must be a TCP port (0: random)')
  opts.port = port
  opts.protocolPrefix = opts.protocolPrefix.replace(/\/+$/, '')
  if (opts.latency === '') opts.latency = null
  return opts
}

// ---------------------------------------------------------------------------------------
// latency model: identical to parsec/model/latency.py

class LatencyModel {
  constructor ({ regions, rtt_ms: rttMs, weights, jitter = 0, loss = 0, dial_rtts: dialRtts = 2 }) {
    const n = regions?.length ?? 0
    if (n === 0 || rttMs?.length !== n || rttMs.some(row => row.length !== n)) {
      throw new Error(`the RTT matrix must be ${n}x${n} for ${n} regions`)
    }
    if (weights == null || weights.length === 0) weights = regions.map(() => 1)
    weights = weights.map(Number)
    const total = weights.reduce((a, b) => a + b, 0)
    if (weights.length !== n || weights.some(w => !(w >= 0)) || !(total > 0)) {
      throw new Error('weights: one non-negative number per region, not all zero')
    }
    if (rttMs.some(row => row.some(v => !(Number(v) >= 0)))) throw new Error('RTTs must be non-negative')
    jitter = Number(jitter); loss = Number(loss); dialRtts = Number(dialRtts)
    if (!(loss >= 0 && loss < 1) || !(jitter >= 0) || !(dialRtts >= 0)) {
      throw new Error('loss must be in [0, 1), jitter and dial_rtts >= 0')
    }
    this.regions = regions.map(String)
    this.rttMs = rttMs.map(row => row.map(Number))
    this.weights = weights
    this.jitter = jitter
    this.loss = loss
    this.dialRtts = dialRtts
    // same summation order as Python: running += weight / total
    let running = 0
    this.cumulative = weights.map(w => { running += w / total; return running })
  }

  static load (path) {
    let doc
    try {
      doc = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err) {
      throw new Error(`cannot read latency matrix ${path}: ${err.message}`)
    }
    return new LatencyModel({
      regions: doc.regions,
      rtt_ms: doc.rtt_ms,
      weights: doc.weights,
      jitter: doc.jitter ?? 0,
      loss: doc.loss ?? 0,
      dial_rtts: doc.dial_rtts ?? 2
    })
  }

  /** u = first 8 bytes (big-endian) of sha256(peer id bytes) / 2^64; bisect_right on the cumulative shares */
  regionIndexOf (peerIdBytes) {
    const digest = createHash('sha256').update(peerIdBytes).digest()
    const u = Number(digest.readBigUInt64BE(0)) / 2 ** 64 // Number(BigInt) rounds to nearest, like Python's int / int
    let lo = 0
    let hi = this.cumulative.length
    while (lo < hi) { // bisect.bisect_right
      const mid = (lo + hi) >> 1
      if (u < this.cumulative[mid]) hi = mid
      else lo = mid + 1
    }
    return Math.min(lo, this.regions.length - 1)
  }

  /** one-way delay in ms from region a to b (rtt/2, times the jitter factor when set) */
  oneWayMs (a, b, rng) {
    const base = this.rttMs[a][b] / 2
    if (this.jitter && rng != null) return base * Math.max(0, 1 + this.jitter * rng.gauss())
    return base
  }

  dialMs (a, b) { return this.dialRtts * this.rttMs[a][b] }

  dropped (rng) { return this.loss > 0 && rng.random() < this.loss }
}

/** Seeded (sfc32) or Math.random-based uniform + Gaussian source for jitter and loss. */
class Rng {
  constructor (seed) {
    if (seed == null) { this.random = Math.random; } else {
      const h = createHash('sha256').update(`js-latency/${seed}`).digest()
      let a = h.readUInt32LE(0); let b = h.readUInt32LE(4); let c = h.readUInt32LE(8); let d = h.readUInt32LE(12)
      this.random = () => {
        a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
        let t = (a + b) | 0
        a = b ^ (b >>> 9); b = (c + (c << 3)) | 0; c = (c << 21) | (c >>> 11)
        d = (d + 1) | 0; t = (t + d) | 0; c = (c + t) | 0
        return (t >>> 0) / 4294967296
      }
    }
    this.spare = null
  }

  gauss () { // Box-Muller, N(0, 1)
    if (this.spare != null) { const s = this.spare; this.spare = null; return s }
    let u = 0
    while (u === 0) u = this.random()
    const v = this.random()
    const r = Math.sqrt(-2 * Math.log(u))
    this.spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

function sleep (ms, signal) {
  if (!(ms > 0)) return signal?.aborted ? Promise.reject(signal.reason) : Promise.resolve()
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return }
    const onAbort = () => { clearTimeout(timer); reject(signal.reason) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function untilAborted (signal) {
  return new Promise(resolve => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

// ---------------------------------------------------------------------------------------
// the peers

const opts = parseArgs(process.argv.slice(2))
const protocol = `${opts.protocolPrefix}/kad/1.0.0`
const model = opts.latency ? LatencyModel.load(opts.latency) : null
const rng = new Rng(opts.seed)
const regionCache = new Map() // base58 peer id → region index

function regionOf (peerId) {
  const key = peerId.toString()
  let region = regionCache.get(key)
  if (region === undefined) {
    region = model.regionIndexOf(peerId.toMultihash().bytes)
    if (regionCache.size < 200_000) regionCache.set(key, region)
  }
  return region
}

function regionOfString (text) {
  const cached = regionCache.get(text)
  return cached !== undefined ? cached : regionOf(peerIdFromString(text))
}

const stats = { inbound: {}, outboundDelayedMs: 0, dropped: 0, dialDelays: 0 }

/**
 * Connection set-up delay: a transport wrapper. Every outbound TCP dial waits
 * dial_rtts × rtt(self, remote) before the real dial; libp2p's dial queue always appends
 * /p2p/<id> to the address it hands the transport, so the remote is known. Dials of an
 * address without /p2p/ are not delayed. Covers every dial a node makes (kad, ping,
 * identify-triggered reconnects), once per new connection, never reused connections.
 */
function latencyTransport (factory) {
  return (components) => {
    const transport = factory(components)
    const self = regionOf(components.peerId)
    const dial = transport.dial.bind(transport)
    transport.dial = async (ma, options = {}) => {
      const remote = ma.getComponents().findLast(c => c.code === P2P_CODE)?.value
      if (remote != null) {
        stats.dialDelays++
        await sleep(model.dialMs(self, regionOfString(remote)), options.signal)
      }
      return dial(ma, options)
    }
    return transport
  }
}

/**
 * Message delays: the kad-dht's own network layer. Each peer delays every kad message it
 * writes by one_way(self, remote):
 * - requests: `network.sendRequest` (FIND_NODE, GET_PROVIDERS, GET_VALUE, PING) waits
 *   before the stream is used; `network.sendMessage` (ADD_PROVIDER, PUT_VALUE: no reply)
 *   does not make its sender wait — a socket write on a real link — only loss applies, as
 *   for the py and Go peers;
 * - responses: `rpc.handleMessage` waits before handing the answer to the stream writer.
 * A dropped request is never sent: the requester waits for its own adaptive RPC timeout
 * and records a QUERY_ERROR, as with a lost packet; a dropped ADD_PROVIDER looks sent to
 * the sender (the connection is still opened); a dropped response is never written, so the
 * remote times out. Not covered: identify and ping messages, yamux/noise frames after
 * set-up (only the dial waits), bandwidth, slow start, queueing — as in parsec/model/latency.py.
 */
function installLatency (node, dht) {
  const self = regionOf(node.peerId)
  const net = dht.network
  const sendRequest = net.sendRequest.bind(net)
  const sendMessage = net.sendMessage.bind(net)

  // events the DHT's own network would have produced, reported to onProgress as it does
  const emit = (options, kind, event) => {
    options.onProgress?.(new CustomEvent(`kad-dht:query:${kind}`, { detail: event }))
    return event
  }
  const failed = (to, error, options) =>
    emit(options, 'query-error', { name: 'QUERY_ERROR', type: 3, from: to, error, path: options.path })

  // wait the one-way delay to `to`; the failure event to yield if the wait was aborted
  const delayTo = async (to, options) => {
    const ms = model.oneWayMs(self, regionOf(to), rng)
    try {
      await sleep(ms, options.signal)
    } catch (err) {
      return failed(to, err, options)
    }
    stats.outboundDelayedMs += ms
    return null
  }

  net.sendRequest = async function * (to, msg, options = {}) {
    if (model.dropped(rng)) {
      stats.dropped++
      const signal = net.timeout.getTimeoutSignal(options)
      try {
        await net.components.connectionManager.openConnection(to, { ...options, signal })
        emit(options, 'send-query', { name: 'SEND_QUERY', type: 0, to, messageType: msg.type, messageName: msg.type, path: options.path })
        await untilAborted(signal)
        yield failed(to, new TimeoutError('request lost (emulated loss)'), options)
      } catch (err) {
        yield failed(to, err, options)
      } finally {
        net.timeout.cleanUp(signal)
      }
      return
    }
    const late = await delayTo(to, options)
    if (late) {
      yield late
      return
    }
    yield * sendRequest(to, msg, options)
  }

  net.sendMessage = async function * (to, msg, options = {}) {
    if (model.dropped(rng)) {
      stats.dropped++
      try {
        await net.components.connectionManager.openConnection(to, options)
        emit(options, 'send-query', { name: 'SEND_QUERY', type: 0, to, messageType: msg.type, messageName: msg.type, path: options.path })
        yield emit(options, 'peer-response', { name: 'PEER_RESPONSE', type: 1, from: to, messageType: msg.type, messageName: msg.type, closer: [], providers: [], path: options.path })
      } catch (err) {
        yield failed(to, err, options)
      }
      return
    }
    yield * sendMessage(to, msg, options)
  }

  const handle = dht.rpc.handleMessage
  dht.rpc.handleMessage = async (peerId, msg) => {
    const response = await handle(peerId, msg)
    if (response == null) return response
    if (model.dropped(rng)) { stats.dropped++; return undefined }
    const ms = model.oneWayMs(self, regionOf(peerId), rng)
    await sleep(ms)
    stats.outboundDelayedMs += ms
    return response
  }
}

function countInbound (dht) {
  const handle = dht.rpc.handleMessage.bind(dht.rpc)
  dht.rpc.handleMessage = async (peerId, msg) => {
    stats.inbound[msg.type] = (stats.inbound[msg.type] ?? 0) + 1
    return handle(peerId, msg)
  }
}

async function privateKeyFor (i) {
  if (opts.seed == null) return generateKeyPair('Ed25519')
  // "js/<seed>/<i>" so a Go or py testbed started with the same seed gets other identities
  const seed = createHash('sha256').update(`js/${opts.seed}/${i}`).digest()
  return generateKeyPairFromSeed('Ed25519', new Uint8Array(seed))
}

/** Peer i listening on `port` (0: a random one; a rejoining peer takes its old one). */
async function createPeer (i, port = 0) {
  const transport = model ? latencyTransport(tcp()) : tcp()
  const node = await createLibp2p({
    privateKey: await privateKeyFor(i),
    addresses: { listen: [`/ip4/${opts.host}/tcp/${port}`] },
    transports: [transport],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    connectionMonitor: { enabled: false },
    peerStore: { maxAddressAge: AGE_FOREVER_MS, maxPeerAge: AGE_FOREVER_MS },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol,
        clientMode: false,
        kBucketSize: K,
        peerInfoMapper: passthroughMapper,
        allowQueryWithZeroPeers: true,
        querySelfInterval: MAX_TIMER_MS,
        initialQuerySelfInterval: MAX_TIMER_MS
      })
    },
    start: false
  })
  const dht = node.services.dht
  dht.routingTableRefresh.refreshInterval = MAX_TIMER_MS
  // a peer added by fill already carries the kad-peer tag (written with its addresses):
  // skip the routing table's second peer-store write, keep its peer:add event
  const kb = dht.routingTable.kb
  const onAdd = kb.onAdd
  kb.onAdd = async (peer, bucket, options) => {
    if (options?.[FILLED] === true) dht.routingTable.safeDispatchEvent('peer:add', { detail: peer.peerId })
    else await onAdd(peer, bucket, options)
  }
  countInbound(dht)
  if (model) installLatency(node, dht)
  await node.start()
  return node
}

function listenAddrs (node) {
  return node.getMultiaddrs().map(ma => ma.decapsulateCode(P2P_CODE).toString())
}

// ---------------------------------------------------------------------------------------
// fill: standard k-buckets from a known peer set, into the DHT's own routing table

function kadIdOf (peerId) {
  return createHash('sha256').update(peerId.toMultihash().bytes).digest()
}

/** the first 48 bits of a kad id as two 24-bit integers */
function prefix48 (kadId) {
  return [(kadId[0] << 16) | (kadId[1] << 8) | kadId[2], (kadId[3] << 16) | (kadId[4] << 8) | kadId[5]]
}

/**
 * Each node keeps, per common-prefix length with its own kad id, the k candidates closest
 * to it (parsec.kad.routing.RoutingTable.fill_from), learns their addresses in the peer
 * store and adds them to kad-dht's own routing table, closest first, marked as just
 * pinged so the table does not ping them first. js-libp2p's table is a prefix trie that
 * splits any full bucket down to depth 6 (prefixLength): it holds every peer offered here
 * except that its deepest bucket (CPL >= 6 with self, ~N/64 peers) keeps only the k
 * closest, which starts to bite beyond ~1,300 peers (fill reports mean_rt, what js kept,
 * beside mean_standard_buckets, what was offered). FIND_NODE answers come from that
 * table, unchanged; peers learned later at run time join it the stock js way (ping first).
 */
async function fillNode (node, everyone, listing = 1) {
  const dht = node.services.dht
  const selfBytes = node.peerId.toMultihash().bytes
  const kb = dht.routingTable.kb
  const selfKad = kb.localPeer?.kadId ?? kadIdOf(node.peerId)
  const selfId = node.peerId.toString()
  // rank by the first 48 bits of the XOR gap, as two 24-bit numbers: no allocation per
  // peer, a numeric sort (ties beyond 48 bits need > 2^24 peers to matter)
  const [selfHi, selfLo] = prefix48(selfKad)
  const gaps = new Float64Array(everyone.length)
  const order = []
  for (let i = 0; i < everyone.length; i++) {
    const peer = everyone[i]
    if (peer.text === selfId) continue
    if (peer.ghost && !listsGhost(selfBytes, peer.bytes, listing)) continue
    gaps[i] = (peer.hi ^ selfHi) * 16777216 + (peer.lo ^ selfLo)
    order.push(i)
  }
  order.sort((a, b) => gaps[a] - gaps[b])
  const perCpl = new Map()
  const chosen = []
  for (const i of order) {
    const gap = gaps[i]
    const cpl = gap === 0 ? 48 : 47 - Math.floor(Math.log2(gap))
    const used = perCpl.get(cpl) ?? 0
    if (used >= K) continue
    perCpl.set(cpl, used + 1)
    chosen.push(everyone[i])
  }
  const datastore = node.components.datastore
  for (const peer of chosen) {
    const known = await datastore.has(peer.key)
    if (peer.record == null || known) {
      // one peer-store write: addresses + the tag the table's onAdd would merge separately
      await node.peerStore.merge(peer.id, {
        multiaddrs: peer.multiaddrs,
        protocols: [protocol],
        tags: { [KAD_PEER_TAG]: { value: 1 } }
      })
      if (!known) peer.record = await datastore.get(peer.key)
    } else {
      // the record every other node's store builds from an empty entry, the same bytes:
      // stored as the bytes the first store wrote, without its per-write lock, decode and
      // encode, which were most of a large fill's CPU
      await datastore.put(peer.key, peer.record)
    }
    await kb._add({ peerId: peer.id, kadId: peer.kadId, lastPing: Date.now() }, { [FILLED]: true })
  }
  return { size: dht.routingTable.size, offered: chosen.length }
}

/**
 * Whether the table of the peer with multihash bytes `owner` lists the unreachable id
 * `ghost`: a fixed draw per pair, the first 8 bytes of sha256(owner || ghost) (big-endian)
 * below probability * 2^64 — as parsec.model.stale.lists and the Go program draw.
 */
function listsGhost (owner, ghost, probability) {
  if (probability >= 1) return true
  if (probability <= 0) return false
  const draw = createHash('sha256').update(owner).update(ghost).digest().readBigUInt64BE(0)
  return Number(draw) < probability * 18446744073709551616
}

/** fill: the last `ghosts` of `list` are unreachable ids, each listed by a table with probability `listing`. */
async function fill (nodes, list, ghosts = 0, listing = 1) {
  if (!Array.isArray(list)) throw new Error('fill needs "peers": [{"id","addrs"}…]')
  if (!Number.isInteger(ghosts) || ghosts < 0 || ghosts > list.length || !(listing >= 0 && listing <= 1)) {
    throw new Error(`bad fill: ${ghosts} ghosts of ${list.length} peers, listing ${listing}`)
  }
  const everyone = parsePeerList(list)
  const ghostIds = new Set(list.slice(list.length - ghosts).map(entry => String(entry.id)))
  for (const peer of everyone) peer.ghost = ghostIds.has(peer.text)
  churn.lastFill = everyone // what a rejoining peer's table is filled from
  churn.listing = listing
  const sizes = []
  const offered = []
  await withoutStackTraces(async () => {
    for (let i = 0; i < nodes.length; i++) {
      if (churn.offline.has(i)) continue // filled when it rejoins
      const { size, offered: count } = await fillNode(nodes[i], everyone, listing)
      sizes.push(size)
      offered.push(count)
    }
  })
  return {
    peers: nodes.length,
    known: everyone.length,
    mean_rt: mean(sizes),
    min_rt: Math.min(...sizes),
    max_rt: Math.max(...sizes),
    mean_standard_buckets: mean(offered) // what standard k-buckets would hold; mean_rt is what js kept
  }
}

/**
 * The peer store throws (and catches) a NotFoundError for every peer it has not seen yet;
 * capturing those stack traces is a large share of fill's CPU.
 */
async function withoutStackTraces (work) {
  const stackTraceLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return await work()
  } finally {
    Error.stackTraceLimit = stackTraceLimit
  }
}

function parsePeerList (list) {
  const seen = new Set()
  const everyone = []
  for (const entry of list) {
    const text = String(entry.id)
    if (seen.has(text)) continue
    seen.add(text)
    const id = peerIdFromString(text)
    const multiaddrs = (entry.addrs ?? []).map(a => multiaddr(String(a)).decapsulateCode(P2P_CODE))
    const kadId = kadIdOf(id)
    const [hi, lo] = prefix48(kadId)
    // key: where a peer store keeps this peer's record (@libp2p/peer-store's layout)
    everyone.push({ id, text, kadId, hi, lo, multiaddrs, key: new Key(`/peers/${id.toCID().toString()}`), record: null,
      bytes: id.toMultihash().bytes, ghost: false })
  }
  return everyone
}

function mean (values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0
}

// ---------------------------------------------------------------------------------------
// operations

function parseKey (hex) {
  if (typeof hex !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(hex)) throw new Error('key must be a hex multihash')
  let digest
  try {
    digest = Digest.decode(new Uint8Array(Buffer.from(hex, 'hex')))
  } catch (err) {
    throw new Error(`key is not a multihash: ${err.message}`)
  }
  if (digest.code !== SHA2_256 || digest.size !== 32) throw new Error('key must be a sha2-256 multihash (js-libp2p rejects others)')
  return CID.createV1(RAW_CODEC, digest)
}

function nodeAt (nodes, index) {
  checkIndex(nodes, index)
  if (churn.offline.has(index)) throw new Error(`peer ${index} is offline (it left; rejoin brings it back)`)
  return nodes[index]
}

function checkIndex (nodes, index) {
  if (!Number.isInteger(index) || index < 0 || index >= nodes.length) {
    throw new Error(`peer must be an index in [0, ${nodes.length})`)
  }
}

function timeoutOf (cmd, fallback) {
  const timeout = cmd.timeout_s == null ? fallback : Number(cmd.timeout_s)
  if (!(timeout > 0 && timeout <= 86_400)) throw new Error('timeout_s must be in (0, 86400]')
  return timeout
}

function errorText (err) {
  return err?.message || err?.name || String(err) || 'error'
}

/**
 * Counts the kad-dht's own query events of one operation (passed as its onProgress):
 * sent = messages written (ADD_PROVIDER included), answered = responses to requests,
 * failed = dial/stream/timeout errors; for a provide, the ADD_PROVIDER messages written
 * (the sender's view: js never learns whether the record was stored).
 * PARSEC_JS_TRACE=1 also logs each event with its time offset to stderr.
 */
function rpcCounter (label) {
  const counts = { sent: 0, answered: 0, failed: 0, stored: 0 }
  const t0 = Date.now()
  const onProgress = (evt) => {
    if (!evt.type?.startsWith('kad-dht:')) return
    const e = evt.detail
    if (e == null) return
    if (e.name === 'SEND_QUERY') counts.sent++
    else if (e.name === 'QUERY_ERROR') counts.failed++
    else if (e.name === 'PEER_RESPONSE') {
      if (e.messageName === 'ADD_PROVIDER') counts.stored++
      else counts.answered++
    }
    if (TRACE) process.stderr.write(`trace ${label} +${Date.now() - t0}ms ${e.name} ${e.messageName ?? ''} ${(e.to ?? e.from ?? e.peer)?.toString().slice(-6) ?? ''} ${e.error?.message ?? ''}\n`)
  }
  return { counts, onProgress }
}

async function provide (node, cid, timeoutS) {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new TimeoutError(`provide not done within ${timeoutS}s`)), timeoutS * 1000)
  const rpcs = rpcCounter('provide')
  const start = process.hrtime.bigint()
  let error = ''
  try {
    await node.contentRouting.provide(cid, { signal: controller.signal, onProgress: rpcs.onProgress })
  } catch (err) {
    error = controller.signal.aborted ? errorText(controller.signal.reason) : errorText(err)
  } finally {
    clearTimeout(timer)
  }
  const { stored, ...counts } = rpcs.counts
  return { duration_ns: Number(process.hrtime.bigint() - start), error, add_provider_sent: stored, rpcs: counts }
}

async function findFirstProvider (node, cid, timeoutS) {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new TimeoutError(`no provider within ${timeoutS}s`)), timeoutS * 1000)
  const rpcs = rpcCounter('find')
  const start = process.hrtime.bigint()
  let provider = null
  let error = ''
  try {
    for await (const peer of node.contentRouting.findProviders(cid, { signal: controller.signal, onProgress: rpcs.onProgress })) {
      provider = peer.id
      break
    }
  } catch (err) {
    error = controller.signal.aborted ? errorText(controller.signal.reason) : errorText(err)
  } finally {
    clearTimeout(timer)
  }
  const duration = Number(process.hrtime.bigint() - start)
  const { stored, ...counts } = rpcs.counts
  controller.abort() // end the rest of the query
  if (provider != null && !provider.equals(node.peerId)) await forget(node, provider)
  return { duration_ns: duration, provider: provider ? provider.toString() : '', error, rpcs: counts }
}

/**
 * bootstrap: one node joins the DHT the js-libp2p way instead of a direct fill. As
 * @libp2p/bootstrap does, the bootstrap peers' addresses go to the peer store and each is
 * dialled; identify then reports the kad protocol, kad-dht's topology listener queues them
 * for the routing table (ping first, as for any new contact) and we wait (bounded) until
 * they are in. Then kad-dht's own join work runs once: the self-query (QuerySelf, what a
 * stock node runs 1 s after start; here its timer is pushed out, so it is run by hand) and
 * the routing-table refresh (`dht.refreshRoutingTable()`, forced: one lookup per tracked
 * common-prefix length), waited for. Both periodic timers stay ~24.8 days out, as for
 * every testbed peer. Bounded by timeout_s.
 */
async function bootstrap (node, list, timeoutS) {
  if (!Array.isArray(list)) throw new Error('bootstrap needs "peers": [{"id","addrs"}…]')
  const selfId = node.peerId.toString()
  const targets = []
  for (const entry of list) {
    const text = String(entry?.id)
    if (text === selfId || targets.some(t => t.text === text)) continue
    const multiaddrs = (entry.addrs ?? []).map(a => multiaddr(String(a)).decapsulateCode(P2P_CODE))
    if (multiaddrs.length > 0) targets.push({ id: peerIdFromString(text), text, multiaddrs })
  }
  if (targets.length === 0) throw new Error('bootstrap needs "peers" other than the peer itself, with addresses')
  const dht = node.services.dht
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new TimeoutError(`bootstrap not done within ${timeoutS}s`)), timeoutS * 1000)
  const signal = controller.signal
  const start = process.hrtime.bigint()
  let connected = []
  let error = ''
  try {
    // 1. addresses to the peer store, then dial (all at once: bootstrap lists are short)
    for (const target of targets) await node.peerStore.merge(target.id, { multiaddrs: target.multiaddrs })
    const dials = await Promise.allSettled(targets.map(t => node.dial(t.id, { signal })))
    connected = targets.filter((_, i) => dials[i].status === 'fulfilled')
    if (connected.length === 0) {
      signal.throwIfAborted()
      const reasons = dials.map((d, i) => `${targets[i].text}: ${errorText(d.reason)}`)
      throw new Error(`could not connect to any bootstrap peer: ${reasons.join('; ')}`)
    }
    // 2. wait until they are in the routing table (identify → topology → ping → add)
    const admitDeadline = Date.now() + BOOTSTRAP_ADMIT_WAIT_MS
    while (Date.now() < admitDeadline) {
      let inTable = 0
      for (const target of connected) {
        if (await dht.routingTable.find(target.id) != null) inTable++
      }
      if (inTable === connected.length) break
      await sleep(20, signal)
    }
    if (dht.routingTable.size === 0) throw new Error('no bootstrap peer entered the routing table')
    // 3. kad-dht's own self-query, then its routing-table refresh, once each
    await runOnce(() => selfQuery(dht), signal, () => dht.querySelf.controller?.abort())
    await runOnce(() => refreshTableOnce(dht, signal), signal)
  } catch (err) {
    error = signal.aborted ? errorText(signal.reason) : errorText(err)
  } finally {
    clearTimeout(timer)
  }
  return {
    rt_size: dht.routingTable.size,
    duration_ns: Number(process.hrtime.bigint() - start),
    error,
    connected: connected.length
  }
}

/** `work()` raced against `signal` (`onAbort` tells the work to stop when the signal wins). */
async function runOnce (work, signal, onAbort) {
  signal.throwIfAborted()
  const aborted = new Promise((resolve, reject) => {
    signal.addEventListener('abort', () => { onAbort?.(); reject(signal.reason) }, { once: true })
  })
  aborted.catch(() => {})
  await Promise.race([work(), aborted])
}

/** QuerySelf.querySelf(): the stock self-query (getClosestPeers(self), 5 s first-run timeout). */
async function selfQuery (dht) {
  clearTimeout(dht.querySelf.timeoutId) // the pending (~24.8-day) timer: querySelf schedules the next one itself
  await dht.querySelf.querySelf()
}

/**
 * `dht.refreshRoutingTable()` starts RoutingTableRefresh.refreshTable(true) without waiting
 * for it; refreshTable always ends by scheduling its next run (`this.refreshTimeoutId =
 * setTimeout(…)`, whatever its lookups did), so that assignment is the "done" signal.
 */
const refreshing = new WeakMap() // dht → the refresh a bootstrap is waiting for (joined, not doubled)

function refreshTableOnce (dht, signal) {
  const running = refreshing.get(dht)
  if (running != null) return running
  const refresh = dht.routingTableRefresh
  const done = new Promise(resolve => {
    clearTimeout(refresh.refreshTimeoutId) // the pending (~24.8-day) run: refreshTable schedules the next one
    let current = refresh.refreshTimeoutId
    const restore = value => {
      Object.defineProperty(refresh, 'refreshTimeoutId', { value, writable: true, configurable: true, enumerable: true })
    }
    Object.defineProperty(refresh, 'refreshTimeoutId', {
      configurable: true,
      enumerable: true,
      get: () => current,
      set: value => { current = value; restore(value); resolve() }
    })
    signal.addEventListener('abort', () => { restore(current); resolve() }, { once: true })
    dht.refreshRoutingTable({ signal }).catch(() => {})
  })
  refreshing.set(dht, done)
  done.finally(() => refreshing.delete(dht))
  return done
}

// ---------------------------------------------------------------------------------------
// churn: when peers leave and come back is decided by the Python side
// (parsec.model.churn.ChurnSchedule); these carry the orders out.

const churn = { offline: new Set(), ports: [], lastFill: null, listing: 1, busy: new Map() }

/** Leaves and restarts of one peer run one after another (a rejoin's self-query does not count). */
function onePeerAtATime (index, work) {
  const previous = churn.busy.get(index) ?? Promise.resolve()
  const next = previous.catch(() => {}).then(work)
  churn.busy.set(index, next)
  next.finally(() => { if (churn.busy.get(index) === next) churn.busy.delete(index) }).catch(() => {})
  return next
}

/** leave: the node stops (listener and connections closed); key and port stay known. */
async function leave (nodes, index) {
  if (churn.offline.has(index)) throw new Error(`peer ${index} is already offline`)
  churn.offline.add(index) // from now on commands on it answer "offline"
  await nodes[index].stop()
  return { offline: churn.offline.size }
}

/** rejoin, first half: a new node with the same key on the same port, filled as fill does. */
async function restart (nodes, index) {
  if (!churn.offline.has(index)) throw new Error(`peer ${index} is online (only a peer that left can rejoin)`)
  const started = process.hrtime.bigint()
  let node
  try {
    node = await createPeer(index, churn.ports[index])
  } catch (err) {
    throw new Error(`peer ${index} could not restart on port ${churn.ports[index]}: ${errorText(err)}`)
  }
  if (churn.lastFill != null) await withoutStackTraces(() => fillNode(node, churn.lastFill, churn.listing))
  nodes[index] = node
  churn.offline.delete(index)
  return { node, started }
}

/** rejoin, second half: kad-dht's own self-query once, bounded (the peer stays online if it fails). */
async function announce ({ node, started }, timeoutS) {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new TimeoutError(`self-query not done within ${timeoutS}s`)), timeoutS * 1000)
  const dht = node.services.dht
  let error = ''
  try {
    await runOnce(() => selfQuery(dht), controller.signal, () => dht.querySelf.controller?.abort())
  } catch (err) {
    error = controller.signal.aborted ? errorText(controller.signal.reason) : errorText(err)
  } finally {
    clearTimeout(timer)
  }
  return {
    rt_size: dht.routingTable.size,
    duration_ns: Number(process.hrtime.bigint() - started),
    error,
    offline: churn.offline.size
  }
}

/** Hang up on a provider and drop its addresses, unless the routing table needs them (as parsec.net.node.forget). */
async function forget (node, peerId) {
  try { await node.hangUp(peerId) } catch {}
  try {
    const inTable = await node.services.dht.routingTable.find(peerId)
    if (inTable == null) await node.peerStore.delete(peerId)
  } catch {}
}

function collectStats (nodes, started) {
  const sizes = nodes.map((n, i) => churn.offline.has(i) ? 0 : n.services.dht.routingTable.size)
  const memory = process.memoryUsage()
  let connections = 0
  nodes.forEach((node, i) => { if (!churn.offline.has(i)) connections += node.getConnections().length })
  const out = {
    peers: nodes.length,
    offline: churn.offline.size,
    protocol,
    mean_rt: mean(sizes),
    min_rt: sizes.length ? Math.min(...sizes) : 0,
    max_rt: sizes.length ? Math.max(...sizes) : 0,
    routing_table_sizes: sizes,
    connections,
    inbound_requests: Object.values(stats.inbound).reduce((a, b) => a + b, 0),
    inbound_by_type: stats.inbound,
    memory,
    rss_per_peer_bytes: Math.round(memory.rss / Math.max(nodes.length, 1)),
    uptime_s: (Date.now() - started) / 1000,
    latency: model == null
      ? null
      : { regions: model.regions, dropped: stats.dropped, dial_delays: stats.dialDelays, delayed_ms_total: Math.round(stats.outboundDelayedMs) }
  }
  return out
}

// ---------------------------------------------------------------------------------------
// main loop

function send (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

let stopping = null
async function stopAll (nodes) {
  if (stopping) return stopping
  stopping = (async () => {
    const timer = new Promise(resolve => setTimeout(resolve, STOP_GRACE_MS).unref())
    const online = nodes.filter((_, i) => !churn.offline.has(i))
    await Promise.race([Promise.allSettled(online.map(n => n.stop())), timer])
  })()
  return stopping
}

process.on('unhandledRejection', err => {
  process.stderr.write(`peers.mjs: unhandled rejection: ${err?.stack ?? err}\n`)
})
process.on('uncaughtException', err => {
  process.stderr.write(`peers.mjs: uncaught exception: ${err?.stack ?? err}\n`)
})

async function main () {
  const started = Date.now()
  const nodes = new Array(opts.peers)
  let next = 0
  async function worker () {
    while (next < opts.peers) {
      const i = next++
      nodes[i] = await createPeer(i, i === 0 ? opts.port : 0)
    }
  }
  await Promise.all(Array.from({ length: Math.min(START_CONCURRENCY, opts.peers) }, worker))
  churn.ports = nodes.map(node => Number(node.getMultiaddrs()[0].getComponents().find(c => c.code === TCP_CODE).value))
  send({
    event: 'listening',
    peers: nodes.map(node => {
      const entry = { id: node.peerId.toString(), addrs: listenAddrs(node) }
      if (model) entry.region = model.regions[regionOf(node.peerId)]
      return entry
    })
  })
  process.stderr.write(`peers.mjs: ${opts.peers} peers listening on ${protocol} after ${((Date.now() - started) / 1000).toFixed(1)}s\n`)

  const exit = async (code) => {
    await stopAll(nodes)
    process.exit(code)
  }
  process.on('SIGTERM', () => { exit(0) })
  process.on('SIGINT', () => { exit(0) })

  const commands = {
    fill: cmd => fill(nodes, cmd.peers, cmd.ghosts ?? 0, cmd.listing ?? 1),
    provide: cmd => provide(nodeAt(nodes, cmd.peer), parseKey(cmd.key), timeoutOf(cmd, 180)),
    find_first_provider: cmd => findFirstProvider(nodeAt(nodes, cmd.peer), parseKey(cmd.key), timeoutOf(cmd, 60)),
    bootstrap: cmd => bootstrap(nodeAt(nodes, cmd.peer), cmd.peers, timeoutOf(cmd, 60)),
    leave: cmd => { checkIndex(nodes, cmd.peer); return onePeerAtATime(cmd.peer, () => leave(nodes, cmd.peer)) },
    rejoin: cmd => {
      checkIndex(nodes, cmd.peer)
      const timeoutS = timeoutOf(cmd, 30)
      return onePeerAtATime(cmd.peer, () => restart(nodes, cmd.peer)).then(node => announce(node, timeoutS))
    },
    stats: () => collectStats(nodes, started),
    stop: async () => { await stopAll(nodes); return {} }
  }

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  const pending = new Set()
  lines.on('line', line => {
    if (!line.trim()) return
    let cmd
    try {
      cmd = JSON.parse(line)
      if (cmd == null || typeof cmd !== 'object' || Array.isArray(cmd)) throw new Error('a command is a JSON object')
    } catch (err) {
      send({ id: null, ok: false, error: `bad command line: ${errorText(err)}` })
      return
    }
    const id = cmd.id ?? null
    const handler = commands[cmd.cmd]
    if (handler == null) {
      send({ id, ok: false, error: `unknown cmd ${JSON.stringify(cmd.cmd)}` })
      return
    }
    if (stopping && cmd.cmd !== 'stop') {
      send({ id, ok: false, error: 'stopping' })
      return
    }
    const job = (async () => {
      try {
        const result = await handler(cmd)
        send({ id, ok: true, ...result })
      } catch (err) {
        send({ id, ok: false, error: errorText(err) })
      }
      if (cmd.cmd === 'stop') process.exit(0)
    })()
    pending.add(job)
    job.finally(() => pending.delete(job))
  })
  lines.on('close', () => { exit(0) })
}

main().catch(err => {
  process.stderr.write(`peers.mjs: ${err?.stack ?? err}\n`)
  process.exit(1)
})
