/*
 * The seed's storefront, made real: boot the SDK from /payments/init, mount the three Secure
 * Fields, tokenize on "Place order", hand the instrument id to /checkout/place-order
 * (postToBackend), and open a 3-D Secure challenge in a modal iframe when asked to.
 */
(function () {
  'use strict'

  const button = document.getElementById('place-order')
  const errorBox = document.getElementById('checkout-error')
  const amountEl = document.getElementById('order-amount')
  const AMOUNT = { value: amountEl.dataset.value, currency: amountEl.dataset.currency }
  const CUSTOMER_REFERENCE = customerReference()
  // Place-order refusals after which the same orderReference can never succeed.
  const NEW_ORDER_AFTER = [409, 502]
  let cardContainer = null

  function randomHex (bytes) {
    const buffer = new Uint8Array(bytes)
    window.crypto.getRandomValues(buffer)
    return Array.from(buffer, b => b.toString(16).padStart(2, '0')).join('')
  }

  function customerReference () {
    const stored = window.sessionStorage.getItem('demo.customerReference')
    if (stored) return stored
    const fresh = `cus-${randomHex(6)}`
    window.sessionStorage.setItem('demo.customerReference', fresh)
    return fresh
  }

  function startNewOrder () {
    window.currentOrderReference = `ord-${randomHex(8)}`
    document.getElementById('order-reference').textContent = window.currentOrderReference
  }

  function confirmationUrl (orderReference) {
    return `/order-confirmation/${encodeURIComponent(orderReference)}`
  }

  function setBusy (busy) {
    button.disabled = busy
    button.textContent = busy ? 'Processing…' : 'Place order'
  }

  function describeError (response) {
    if (response.status === 'failed') {
      const reason = response.reason ? ` (${response.reason})` : ''
      return `Payment declined${reason} for order ${response.orderReference}. Try another card.`
    }
    if (Array.isArray(response.errors) && response.errors.length) {
      return response.errors
        .map(e => (typeof e === 'string' ? e : [e.field, e.message || e.detail].filter(Boolean).join(': ')))
        .join('; ')
    }
    return response.message || response.error || 'Something went wrong. Please try again.'
  }

  function renderError (response) {
    errorBox.textContent = describeError(response)
    errorBox.hidden = false
    errorBox.dataset.orderReference = response.orderReference || window.currentOrderReference
    // A declined order is final, and a 409 or 502 is a refusal that retrying the same order
    // cannot fix: the next attempt is a new order. After a 503 the same order is retried.
    if (response.status === 'failed' || NEW_ORDER_AFTER.includes(response.httpStatus)) {
      startNewOrder()
    }
    setBusy(false)
  }

  async function postJson (url, body) {
    const response = await window.fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    })
    const payload = await response.json().catch(() => ({}))
    if (!response.ok && response.status !== 202 && !payload.status) {
      payload.message = payload.message || payload.error || `HTTP ${response.status}`
    }
    payload.httpStatus = response.status
    return payload
  }

  async function postToBackend ({ paymentInstrumentId, paymentMethodCode }) {
    const response = await postJson('/checkout/place-order', {
      paymentInstrumentId,
      paymentMethodCode,
      amount: AMOUNT,
      orderReference: window.currentOrderReference,
      customerReference: CUSTOMER_REFERENCE
    })

    if (response.actionRequired === '3ds' && response.redirectUrl) {
      openThreeDsChallenge(response.redirectUrl)
      return
    }
    // "processing": the authorize outcome is not known yet; the confirmation page follows it.
    if (response.status === 'authorized' || response.status === 'processing') {
      window.location.assign(confirmationUrl(response.orderReference))
      return
    }
    renderError(response)
  }

  function openThreeDsChallenge (redirectUrl) {
    const iframe = document.getElementById('threeds-iframe')
    iframe.src = redirectUrl
    document.getElementById('threeds-modal').hidden = false
  }

  function closeThreeDsChallenge () {
    document.getElementById('threeds-modal').hidden = true
    document.getElementById('threeds-iframe').src = 'about:blank'
    renderError({ message: 'The 3-D Secure check was closed before it finished.' })
  }

  // The return page (same origin as this page) posts here once the backend re-read the execution.
  window.addEventListener('message', event => {
    if (event.origin !== window.location.origin) return
    if (event.data?.type !== 'threeds:complete') return
    window.location.assign(confirmationUrl(event.data.orderReference))
  })

  async function placeOrder () {
    errorBox.hidden = true
    setBusy(true)
    try {
      const tokenized = await cardContainer.tokenize({ storeInstrument: false })
      await postToBackend({ paymentInstrumentId: tokenized.id, paymentMethodCode: 'card' })
    } catch (err) {
      renderError({ message: err.message || String(err) })
    }
  }

  async function boot () {
    startNewOrder()
    if (typeof window.Payrails === 'undefined') {
      renderError({ message: 'The Payrails SDK did not load: is the sandbox running?' })
      button.disabled = true
      return
    }
    const initOptions = await postJson('/payments/init', {
      holderReference: CUSTOMER_REFERENCE,
      type: 'secureFields'
    })
    if (typeof initOptions.data !== 'string') {
      throw new Error(initOptions.message || 'no client/init payload from /payments/init')
    }
    const payrails = window.Payrails.init(initOptions)
    cardContainer = payrails.collectContainer({ containerType: 'COLLECT' })
    cardContainer.createCollectElement({ type: 'CARD_NUMBER' }).mount('#card-number')
    cardContainer.createCollectElement({ type: 'EXPIRATION_DATE' }).mount('#card-expiry')
    cardContainer.createCollectElement({ type: 'CVV' }).mount('#card-cvv')
    button.addEventListener('click', placeOrder)
    document.getElementById('threeds-close').addEventListener('click', closeThreeDsChallenge)
    button.disabled = false
  }

  boot().catch(err => {
    renderError({ message: `The payment form could not load: ${err.message || err}` })
    button.disabled = true
  })
})()
