/*
 * Payrails Web SDK stand-in (Secure Fields only), served by the sandbox from its own origin.
 *
 *   const payrails = Payrails.init(await (await fetch('/payments/init', ...)).json())
 *   const container = payrails.collectContainer({ containerType: 'COLLECT' })
 *   container.createCollectElement({ type: 'CARD_NUMBER' }).mount('#card-number')
 *   const { id } = await container.tokenize({ storeInstrument: false })
 *
 * Each element is an iframe from this script's origin. Card data lives only inside those
 * iframes: on tokenize() the card-number iframe gathers the other two fields from its
 * same-origin siblings and posts them to the sandbox itself. The page only ever receives
 * the instrument id (plus bin and last4, as the real SDK returns them).
 */
(function (global) {
  'use strict'

  const CHANNEL = 'payrails-secure-fields'
  const SDK_ORIGIN = new URL(document.currentScript.src).origin
  const FIELD_URL = SDK_ORIGIN + '/public/secure-fields/field'
  const FIELD_TYPES = ['CARD_NUMBER', 'EXPIRATION_DATE', 'CVV']
  const TITLES = { CARD_NUMBER: 'Card number', EXPIRATION_DATE: 'Expiry date', CVV: 'Security code' }
  const TOKENIZE_TIMEOUT_MS = 30000

  function randomId () {
    const bytes = new Uint8Array(8)
    global.crypto.getRandomValues(bytes)
    return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
  }

  function decodeInitPayload (payload) {
    if (!payload || typeof payload.data !== 'string') {
      throw new TypeError('Payrails.init expects the client/init payload: {version, data}')
    }
    const binary = global.atob(payload.data)
    const bytes = Uint8Array.from(binary, ch => ch.charCodeAt(0))
    const config = JSON.parse(new TextDecoder().decode(bytes))
    if (!config || typeof config.token !== 'string') {
      throw new TypeError('client/init data carries no SDK token')
    }
    return config
  }

  class SecureFieldsError extends Error {
    constructor (message, fields) {
      super(message)
      this.name = 'SecureFieldsError'
      this.fields = fields || []
    }
  }

  class CollectElement {
    constructor (container, type) {
      this.container = container
      this.type = type
      this.iframe = null
      this.state = { empty: true, valid: false }
      this.ready = new Promise(resolve => { this.markReady = resolve })
    }

    mount (selector) {
      const host = typeof selector === 'string' ? document.querySelector(selector) : selector
      if (!host) throw new Error(`Payrails: no element matches ${selector}`)
      const query = new URLSearchParams({
        type: this.type,
        group: this.container.id,
        parentOrigin: global.location.origin
      })
      const iframe = document.createElement('iframe')
      iframe.src = `${FIELD_URL}?${query}`
      iframe.name = `payrails-${this.container.id}-${this.type}`
      iframe.title = TITLES[this.type]
      iframe.className = 'payrails-secure-field'
      iframe.setAttribute('data-payrails-field', this.type)
      iframe.style.border = '0'
      iframe.style.width = '100%'
      iframe.style.height = '44px'
      host.replaceChildren(iframe)
      this.iframe = iframe
      return this
    }

    isFrom (source) {
      return this.iframe !== null && this.iframe.contentWindow === source
    }
  }

  class CollectContainer {
    constructor (config) {
      this.config = config
      this.id = randomId()
      this.elements = new Map()
      this.pending = new Map()
      global.addEventListener('message', event => this.onMessage(event))
    }

    createCollectElement ({ type } = {}) {
      if (!FIELD_TYPES.includes(type)) {
        throw new TypeError(`Payrails: unsupported element type ${type}`)
      }
      const element = new CollectElement(this, type)
      this.elements.set(type, element)
      return element
    }

    onMessage (event) {
      if (event.origin !== SDK_ORIGIN) return
      const msg = event.data
      if (!msg || msg.channel !== CHANNEL || msg.group !== this.id) return
      const element = this.elements.get(msg.field)
      if (!element || !element.isFrom(event.source)) return
      if (msg.type === 'ready') element.markReady()
      if (msg.type === 'change') element.state = { empty: !!msg.empty, valid: !!msg.valid }
      if (msg.type === 'tokenized' || msg.type === 'error') this.settle(msg)
    }

    settle (msg) {
      const waiter = this.pending.get(msg.requestId)
      if (!waiter) return
      this.pending.delete(msg.requestId)
      if (msg.type === 'tokenized') waiter.resolve(msg.result)
      else waiter.reject(new SecureFieldsError(msg.message, msg.fields))
    }

    async tokenize ({ storeInstrument = false } = {}) {
      const missing = FIELD_TYPES.filter(type => !this.elements.has(type))
      if (missing.length) throw new SecureFieldsError('Payrails: mount every card field first', missing)
      await Promise.all(FIELD_TYPES.map(type => this.elements.get(type).ready))
      const requestId = randomId()
      const result = new Promise((resolve, reject) => {
        this.pending.set(requestId, { resolve, reject })
        global.setTimeout(() => this.settle({
          type: 'error', requestId, message: 'Tokenization timed out', fields: []
        }), TOKENIZE_TIMEOUT_MS)
      })
      this.elements.get('CARD_NUMBER').iframe.contentWindow.postMessage({
        channel: CHANNEL,
        type: 'tokenize',
        group: this.id,
        requestId,
        sdkToken: this.config.token,
        storeInstrument: !!storeInstrument
      }, SDK_ORIGIN)
      return result
    }
  }

  class PayrailsClient {
    constructor (config) {
      this.config = config
    }

    collectContainer ({ containerType = 'COLLECT' } = {}) {
      if (containerType !== 'COLLECT') {
        throw new TypeError(`Payrails: unsupported container type ${containerType}`)
      }
      return new CollectContainer(this.config)
    }
  }

  global.Payrails = Object.freeze({
    init (payload) {
      return new PayrailsClient(decodeInitPayload(payload))
    },
    SecureFieldsError
  })
})(window)
