// Two nodes in one process: tools registered in JavaScript, discovered and called from the
// other node; DHT put/get; gossip; a throwing handler; events; shutdown releasing the port.
'use strict'

const assert = require('node:assert/strict')
const dgram = require('node:dgram')
const net = require('node:net')
const { test } = require('node:test')

const { Node } = require('..')
const { ECHO_SCHEMA, first, pair, shutdown, step } = require('./helpers')

/** Resolves once `port` on 127.0.0.1 could be bound (UDP and TCP), rejects otherwise. */
async function bindBoth(port) {
  const udp = dgram.createSocket('udp4')
  await new Promise((resolve, reject) => {
    udp.once('error', reject)
    udp.bind(port, '127.0.0.1', resolve)
  })
  udp.close()
  const tcp = net.createServer()
  await new Promise((resolve, reject) => {
    tcp.once('error', reject)
    tcp.listen(port, '127.0.0.1', resolve)
  })
  await new Promise((resolve) => tcp.close(resolve))
}

test('a JavaScript tool is discovered and called from the other node', async () => {
  const { provider, caller } = await pair()
  const seen = []
  await step(
    provider.registerTool(
      'echo',
      ECHO_SCHEMA,
      async (args) => {
        seen.push(args)
        await new Promise((resolve) => setImmediate(resolve)) // a real Promise, suspended once
        return { echo: args.text, n: seen.length }
      },
      { description: 'echoes' },
    ),
  )
  // A plain (non-async) function works too.
  await step(provider.registerTool('shout', ECHO_SCHEMA, (args) => args.text.toUpperCase()))

  const found = await step(caller.discoverTools('echo'))
  assert.deepEqual(
    found.map((t) => [t.name, t.provider, t.description]),
    [['echo', provider.peerId, 'echoes']],
  )
  const answer = await step(caller.callTool('echo', { text: 'hi' }))
  assert.equal(answer.provider, provider.peerId)
  assert.deepEqual(answer.value, { echo: 'hi', n: 1 })
  assert.deepEqual(seen, [{ text: 'hi' }])
  const pinned = await step(caller.callPeer(provider.peerId, 'shout', { text: 'hey' }))
  assert.deepEqual([pinned.value, pinned.text, pinned.provider], ['HEY', 'HEY', provider.peerId])

  // The schema is enforced by the provider's MCP server: the caller gets its error.
  await assert.rejects(step(caller.callPeer(provider.peerId, 'echo', { text: 5 })), /text/)
  await assert.rejects(step(caller.callTool('nobody-offers-this', {})), /no provider/)
  assert.equal(seen.length, 1)
  await shutdown(caller, provider)
})

test('a throwing handler gives the caller an MCP error and the node keeps serving', async () => {
  const { provider, caller } = await pair()
  let calls = 0
  await step(
    provider.registerTool('flaky', ECHO_SCHEMA, async (args) => {
      calls += 1
      if (args.text === 'boom') throw new TypeError(`cannot handle '${args.text}'`)
      return `ok ${args.text}`
    }),
  )
  // A synchronous throw and a thrown non-Error are MCP errors too.
  await step(
    provider.registerTool('sync-throw', null, () => {
      throw new RangeError('out of range')
    }),
  )
  await step(
    provider.registerTool('reject-string', null, () => Promise.reject('just a string')),
  )
  for (let i = 0; i < 2; i++) {
    await assert.rejects(step(caller.callTool('flaky', { text: 'boom' })), (e) => {
      assert.ok(e instanceof Error)
      assert.equal(e.message, "TypeError: cannot handle 'boom'")
      return true
    })
    const ok = await step(caller.callTool('flaky', { text: 'fine' }))
    assert.equal(ok.value, 'ok fine')
  }
  assert.equal(calls, 4)
  await assert.rejects(step(caller.callPeer(provider.peerId, 'sync-throw')), {
    message: 'RangeError: out of range',
  })
  await assert.rejects(step(caller.callPeer(provider.peerId, 'reject-string')), {
    message: 'just a string',
  })
  assert.equal((await step(caller.callTool('flaky', { text: 'still' }))).value, 'ok still')
  await shutdown(caller, provider)
})

test('a DHT value put on one node is read on the other', async () => {
  const { provider, caller } = await pair()
  assert.ok((await step(caller.dhtPut('binding/key', Buffer.from('v1')))) >= 1)
  assert.ok((await step(caller.dhtPut('binding/key', 'v2'))) >= 1)
  const got = await step(provider.dhtGet('binding/key'))
  assert.ok(Buffer.isBuffer(got))
  assert.equal(got.toString(), 'v2')
  assert.equal(await step(provider.dhtGet('binding/absent')), null)
  await shutdown(caller, provider)
})

test('gossip is delivered to the other node', async () => {
  const { provider, caller } = await pair()
  const sub = await step(provider.subscribe('news'))
  assert.equal(sub.topic, 'news')
  await step(caller.subscribe('news'))
  await step(caller.waitForTopicPeers('news', 1))
  const id = await step(caller.publish('news', Buffer.from('hello')))
  const { value: message, done } = await step(sub[Symbol.asyncIterator]().next())
  assert.equal(done, false)
  assert.equal(message.data.toString(), 'hello')
  assert.deepEqual([message.author, message.topic, message.id], [caller.peerId, 'news', id])
  // `for await` works too.
  await step(caller.publish('news', 'second'))
  assert.equal((await step(first(sub))).data.toString(), 'second')
  await shutdown(caller, provider)
})

test('events report the peer that connected; connect takes three words', async () => {
  const provider = await step(Node.start({ listen: '127.0.0.1:0', mdns: false }))
  const events = provider.events()
  const caller = await step(Node.start({ listen: '127.0.0.1:0', mdns: false }))
  assert.equal(await step(caller.connect(provider.words)), provider.peerId)
  assert.ok(caller.connectedPeers().includes(provider.peerId))
  const event = await step(first(events, (e) => e.kind === 'connected' && e.peer === caller.peerId))
  assert.match(event.addr, /^127\.0\.0\.1:/)
  await shutdown(caller, provider)
})

test('shutdown releases the port and later calls reject', async () => {
  const node = await step(Node.start({ listen: '127.0.0.1:0', mdns: false }))
  const port = node.port
  assert.equal(node.addr, `${node.peerId}@127.0.0.1:${port}`)
  // While the node runs its UDP port (QUIC) is taken.
  await assert.rejects(bindBoth(port), /EADDRINUSE/)
  await step(node.shutdown())
  await step(node.shutdown()) // twice is a no-op
  await assert.rejects(step(node.dhtGet('x')), /shut down/)
  assert.throws(() => node.connectedPeers(), /shut down/)
  // The UDP (QUIC) and TCP (fallback) ports are free again, and a new node binds the port.
  await bindBoth(port)
  const again = await step(Node.start({ listen: `127.0.0.1:${port}`, mdns: false }))
  assert.equal(again.port, port)
  assert.notEqual(again.peerId, node.peerId)
  await step(again.shutdown())
})

test('bad input rejects with the Rust message', async () => {
  await assert.rejects(Node.start({ listen: '/ip4/127.0.0.1/udp/nine/quic-v1' }), /'nine'/)
  await assert.rejects(
    Node.start({ listen: '127.0.0.1:0', bootstrap: ['nobody@127.0.0.1:1'] }),
    /not a peer id/,
  )
  const node = await step(Node.start({ listen: '127.0.0.1:0', mdns: false }))
  await assert.rejects(node.registerTool('t', [1], (a) => a), /schema/)
  // A handler that is not a function is refused when the call is made (napi's own check).
  assert.throws(() => node.registerTool('t', {}, 'not a function'), { code: 'InvalidArg' })
  await assert.rejects(step(node.callTool('t', [1, 2])), /JSON object/)
  await assert.rejects(step(node.callPeer('nobody', 't')), /not a peer id/)
  await assert.rejects(node.discoverTools({}), /either tool or tag/)
  await step(node.shutdown())
})
