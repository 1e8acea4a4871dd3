// Two nodes in separate processes: this test's node calls the tools a provider process
// registered in JavaScript, reads its DHT value and gossips to it; the provider's throwing
// tool gives an MCP error while it keeps serving; its shutdown releases its port and its
// process then exits by itself.
'use strict'

const assert = require('node:assert/strict')
const path = require('node:path')
const { test } = require('node:test')

const { Node } = require('..')
const { step } = require('./helpers')
const { Child } = require('./lines')

test('a node in another process serves tools, DHT and gossip and releases its port', async () => {
  const provider = new Child(process.execPath, [path.join(__dirname, 'provider-process.js')])
  try {
    const addr = await provider.expect('addr ')
    const [providerId, hostport] = addr.split('@')
    const caller = await step(Node.start({ listen: '127.0.0.1:0', bootstrap: [addr], mdns: false }))

    const found = await step(caller.discoverTools('reverse'))
    assert.deepEqual(found.map((t) => t.provider), [providerId])
    const answer = await step(caller.callTool('reverse', { text: 'stressed' }))
    assert.deepEqual([answer.value, answer.provider], ['desserts', providerId])
    await assert.rejects(step(caller.callPeer(providerId, 'fail')), {
      message: 'Error: this tool always fails',
    })
    const again = await step(caller.callPeer(providerId, 'reverse', { text: 'live' }))
    assert.equal(again.value, 'evil')

    provider.send('put proc/key from-the-other-process')
    assert.ok(Number(await provider.expect('stored ')) >= 1)
    assert.equal((await step(caller.dhtGet('proc/key'))).toString(), 'from-the-other-process')

    await step(caller.subscribe('news'))
    await step(caller.waitForTopicPeers('news', 1))
    await step(caller.publish('news', 'hello there'))
    assert.equal(await provider.expect('got '), `hello there from ${caller.peerId}`)

    provider.send('quit')
    const port = Number(await provider.expect('released '))
    assert.equal(hostport, `127.0.0.1:${port}`)
    assert.equal(await provider.exit(), 0)
    await step(caller.shutdown())
  } finally {
    await provider.finish()
  }
})
