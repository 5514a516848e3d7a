/*
 * One Secure Fields iframe (card number, expiry or CVV), running on the sandbox's origin.
 *
 * Messages are accepted from exactly two places: the embedding page (its origin is fixed by
 * the iframe URL and checked on every message) and sibling fields on this same origin. The
 * card-number field is the collector: on `tokenize` it asks its siblings for their values,
 * posts the card to the sandbox's tokenize endpoint and answers the page with the result.
 */
(function () {
  'use strict'

  const CHANNEL = 'payrails-secure-fields'
  const OWN_ORIGIN = window.location.origin
  const TOKENIZE_URL = '/public/secure-fields/tokenize'
  const SIBLING_TIMEOUT_MS = 5000
  const SIBLINGS = ['EXPIRATION_DATE', 'CVV']

  const params = new URLSearchParams(window.location.search)
  const fieldType = params.get('type')
  const group = params.get('group')
  const parentOrigin = toOrigin(params.get('parentOrigin'))
  const input = document.getElementById('field')

  function toOrigin (raw) {
    try {
      const origin = new URL(raw).origin
      return origin === raw ? origin : null
    } catch (err) {
      return null
    }
  }

  function digitsOf (value) {
    return String(value || '').replace(/\D/g, '')
  }

  function passesLuhn (digits) {
    let sum = 0
    for (let i = 0; i < digits.length; i++) {
      let n = Number(digits[digits.length - 1 - i])
      if (i % 2 === 1) n = n > 4 ? n * 2 - 9 : n * 2
      sum += n
    }
    return sum % 10 === 0
  }

  function parseExpiry (value) {
    const digits = digitsOf(value)
    if (digits.length !== 4 && digits.length !== 6) return null
    const month = Number(digits.slice(0, 2))
    const year = digits.length === 4 ? 2000 + Number(digits.slice(2)) : Number(digits.slice(2))
    if (month < 1 || month > 12) return null
    const now = new Date()
    if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
      return null
    }
    return { expiryMonth: String(month).padStart(2, '0'), expiryYear: String(year) }
  }

  const SPECS = {
    CARD_NUMBER: {
      label: 'Card number',
      placeholder: '1234 1234 1234 1234',
      autocomplete: 'cc-number',
      maxLength: 23,
      format: value => digitsOf(value).slice(0, 19).replace(/(\d{4})(?=\d)/g, '$1 '),
      isValid: value => {
        const digits = digitsOf(value)
        return digits.length >= 12 && digits.length <= 19 && passesLuhn(digits)
      }
    },
    EXPIRATION_DATE: {
      label: 'Expiry date',
      placeholder: 'MM / YY',
      autocomplete: 'cc-exp',
      maxLength: 9,
      format: value => {
        const digits = digitsOf(value).slice(0, 6)
        return digits.length <= 2 ? digits : `${digits.slice(0, 2)} / ${digits.slice(2)}`
      },
      isValid: value => parseExpiry(value) !== null
    },
    CVV: {
      label: 'Security code',
      placeholder: 'CVC',
      autocomplete: 'cc-csc',
      maxLength: 4,
      format: value => digitsOf(value).slice(0, 4),
      isValid: value => /^\d{3,4}$/.test(value)
    }
  }

  const spec = SPECS[fieldType]

  function post (target, origin, message) {
    target.postMessage({ channel: CHANNEL, group, field: fieldType, ...message }, origin)
  }

  function toParent (message) {
    post(window.parent, parentOrigin, message)
  }

  function showValidity () {
    const invalid = !spec.isValid(input.value)
    input.classList.toggle('invalid', invalid)
    input.setAttribute('aria-invalid', String(invalid))
    return !invalid
  }

  function onInput () {
    input.value = spec.format(input.value)
    input.classList.remove('invalid')
    toParent({ type: 'change', empty: input.value === '', valid: spec.isValid(input.value) })
  }

  function collectSiblings (requestId) {
    return new Promise((resolve, reject) => {
      const values = {}
      const finish = () => {
        window.clearTimeout(timer)
        window.removeEventListener('message', onValue)
      }
      const onValue = event => {
        const msg = event.data
        if (event.origin !== OWN_ORIGIN || !isOurs(msg)) return
        if (msg.type !== 'value' || msg.requestId !== requestId) return
        values[msg.field] = msg.value
        if (SIBLINGS.every(field => field in values)) {
          finish()
          resolve(values)
        }
      }
      const timer = window.setTimeout(() => {
        finish()
        reject(new Error('The card fields did not answer'))
      }, SIBLING_TIMEOUT_MS)
      window.addEventListener('message', onValue)
      for (const field of SIBLINGS) {
        // The SDK names each iframe; targetOrigin = our own origin, so no other origin hears this.
        const sibling = window.parent.frames[`payrails-${group}-${field}`]
        if (sibling) post(sibling, OWN_ORIGIN, { type: 'collect', requestId })
      }
    })
  }

  function cardFrom (values) {
    const expiry = parseExpiry(values.EXPIRATION_DATE)
    const invalid = []
    if (!SPECS.CARD_NUMBER.isValid(input.value)) invalid.push('CARD_NUMBER')
    if (!expiry) invalid.push('EXPIRATION_DATE')
    if (!SPECS.CVV.isValid(values.CVV)) invalid.push('CVV')
    if (invalid.length) return { invalid }
    return {
      invalid,
      card: { cardNumber: digitsOf(input.value), ...expiry, securityCode: values.CVV }
    }
  }

  function uuidV4 () {
    const b = new Uint8Array(16)
    window.crypto.getRandomValues(b)
    b[6] = (b[6] & 0x0f) | 0x40
    b[8] = (b[8] & 0x3f) | 0x80
    const hex = Array.from(b, x => x.toString(16).padStart(2, '0')).join('')
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
  }

  function errorMessage (status, body) {
    const first = Array.isArray(body.errors) ? body.errors[0] : null
    const detail = (first && (first.detail || first.title)) || body.message || body.error
    return detail ? String(detail) : `Tokenization failed (HTTP ${status})`
  }

  async function submitCard (request, card) {
    const response = await window.fetch(TOKENIZE_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'x-idempotency-key': uuidV4() },
      credentials: 'omit',
      body: JSON.stringify({
        sdkToken: request.sdkToken,
        ...card,
        storeInstrument: !!request.storeInstrument
      })
    })
    const body = await response.json().catch(() => ({}))
    if (!response.ok) throw new Error(errorMessage(response.status, body))
    return body
  }

  async function tokenize (request) {
    const reply = message => toParent({ requestId: request.requestId, ...message })
    try {
      showValidity()
      const { invalid, card } = cardFrom(await collectSiblings(request.requestId))
      if (invalid.length) {
        reply({ type: 'error', message: 'Check the highlighted card details', fields: invalid })
        return
      }
      reply({ type: 'tokenized', result: await submitCard(request, card) })
    } catch (err) {
      reply({ type: 'error', message: String(err.message || err), fields: [] })
    }
  }

  function isOurs (msg) {
    return !!msg && msg.channel === CHANNEL && msg.group === group
  }

  function onMessage (event) {
    const msg = event.data
    if (!isOurs(msg)) return
    const fromParent = event.source === window.parent && event.origin === parentOrigin
    if (fromParent && msg.type === 'tokenize' && fieldType === 'CARD_NUMBER') {
      tokenize(msg)
      return
    }
    if (event.origin === OWN_ORIGIN && msg.type === 'collect' && SIBLINGS.includes(fieldType)) {
      showValidity()
      post(event.source, OWN_ORIGIN, { type: 'value', requestId: msg.requestId, value: input.value })
    }
  }

  if (!spec || !group || !parentOrigin) {
    input.disabled = true
    input.placeholder = 'Secure field misconfigured'
    return
  }
  input.placeholder = spec.placeholder
  input.autocomplete = spec.autocomplete
  input.maxLength = spec.maxLength
  input.inputMode = 'numeric'
  input.name = fieldType.toLowerCase()
  input.setAttribute('aria-label', spec.label)
  document.title = spec.label
  input.addEventListener('input', onInput)
  input.addEventListener('blur', () => { if (input.value) showValidity() })
  window.addEventListener('message', onMessage)
  toParent({ type: 'ready' })
})()
