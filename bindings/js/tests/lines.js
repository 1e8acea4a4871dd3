// A child process speaking a line protocol: the tests wait for lines by prefix.
'use strict'

const { spawn } = require('node:child_process')
const readline = require('node:readline')

const { step } = require('./helpers')

class Child {
  /** Spawns `command args` with piped stdin/stdout (stderr goes to the test's). */
  constructor(command, args, options = {}) {
    this.proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'], ...options })
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)))
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]()
  }

  /** The rest of the next line starting with `prefix` (earlier lines are skipped). */
  async expect(prefix) {
    for (;;) {
      const { value, done } = await step(this.lines.next(), `a line '${prefix}…'`)
      if (done) throw new Error(`the process exited while '${prefix}' was expected`)
      if (value.startsWith(prefix)) return value.slice(prefix.length)
    }
  }

  send(line) {
    this.proc.stdin.write(`${line}\n`)
  }

  /** Its exit code (waits). */
  exit() {
    return step(this.exited, 'the process to exit')
  }

  /** Kills it if it still runs. */
  async finish() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill()
    await this.exited
  }
}

module.exports = { Child }
