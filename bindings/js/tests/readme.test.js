// The README's example, run as it stands there (in its own process, so that it exits by
// itself is checked too).
'use strict'

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')

const ROOT = path.join(__dirname, '..')

test('the README example runs, prints what the README says and exits', async () => {
  const text = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const example = /```js\n([\s\S]*?)```/.exec(text)?.[1]
  assert.ok(example, 'README.md has no js example')
  assert.ok(example.trim().split('\n').length < 20, 'the README example must stay under 20 lines')
  // Run from the package directory, where `require('p2p-foundation')` is the package itself.
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', example], { cwd: ROOT, timeout: 120_000 }, (e, stdout, stderr) =>
      e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve({ stdout }),
    )
  })
  assert.equal(stdout, 'olleh from true\nhi\n')
  assert.ok(text.includes('prints `olleh from true` and `hi`'))
})
