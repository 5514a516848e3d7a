/*
 * The seed's storefront, made real: read the checkout session's order (its price is the shop's,
 * set server-side), boot the SDK from /payments/init, mount the three Secure Fields, tokenize on
 * "Place order", hand the instrument id to /checkout/place-order (postToBackend), and open a
 * 3-D Secure challenge in a modal iframe when asked to. The session travels in an HttpOnly
 * cookie: this script never sees it.
 */
(function () {
  'use strict'

  const button = document.getElementById('place-order')
  const errorBox = document.getElementById('checkout-error')
  const amountEl = document.getElementById('order-amount')
  let order = null // the session's order: { orderReference, amount: { value, currency } }
  let cardContainer = null

  function showOrder (summary) {
    order = summary
    window.currentOrderReference = summary.orderReference
    document.getElementById('order-reference').textContent = summary.orderReference
    amountEl.textContent = `${summary.amount.value} ${summary.amount.currency}`
    amountEl.dataset.value = summary.amount.value
    amountEl.dataset.currency = summary.amount.currency
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
    // The seed's body. amount and orderReference are only checked against the session's
    // order by the backend (a different value is refused), never used.
    const response = await postJson('/checkout/place-order', {
      paymentInstrumentId,
      paymentMethodCode,
      amount: { value: amountEl.dataset.value, currency: amountEl.dataset.currency },
      orderReference: window.currentOrderReference
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

  // The return page (same origin as this page) posts here once the backend re-read the
  // execution. When the challenge came back through the bank's page, the frame had no session
  // cookie (SameSite): it only says it returned, and this page asks for the outcome itself.
  async function afterReturn (executionId) {
    const response = await window.fetch(`/payment-return/${encodeURIComponent(executionId)}`, {
      headers: { Accept: 'application/json' }
    })
    const outcome = await response.json().catch(() => ({}))
    window.location.assign(confirmationUrl(outcome.orderReference || window.currentOrderReference))
  }

  window.addEventListener('message', event => {
    if (event.origin !== window.location.origin) return
    if (event.data?.type === 'threeds:complete') {
      window.location.assign(confirmationUrl(event.data.orderReference))
    } else if (event.data?.type === 'threeds:returned') {
      afterReturn(String(event.data.executionId || '')).catch(err => renderError({ message: String(err) }))
    }
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

  async function loadOrder () {
    const response = await window.fetch('/checkout/session', { headers: { Accept: 'application/json' } })
    if (response.status === 401) {
      document.getElementById('no-session').hidden = false
      return false
    }
    if (!response.ok) throw new Error(`the order could not be loaded (HTTP ${response.status})`)
    showOrder(await response.json())
    return true
  }

  async function boot () {
    if (!(await loadOrder())) return
    if (typeof window.Payrails === 'undefined') {
      renderError({ message: 'The Payrails SDK did not load: is the sandbox running?' })
      button.disabled = true
      return
    }
    const initOptions = await postJson('/payments/init', { type: 'secureFields' })
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
