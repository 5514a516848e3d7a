/*
 * Order confirmation: follows GET /orders/{reference} until the order reaches a final state,
 * and shows what confirmed it (webhook, poll, return page or sweeper).
 */
(function () {
  'use strict'

  const POLL_MS = 1000
  const MAX_BACKOFF_MS = 10000
  const FINAL = new Set(['paid', 'payment_failed', 'needs_review'])
  const STATUS = {
    created: ['Order received', 'Checking your payment…'],
    authorizing: ['Authorizing', 'Authorizing your payment…'],
    action_required: ['Waiting for 3-D Secure', 'Your bank is waiting for you to confirm the payment.'],
    paid: ['Paid', 'Thank you! Your payment is confirmed.'],
    payment_failed: ['Payment failed', 'Your payment did not go through.'],
    needs_review: ['Under review', 'We are confirming the payment with the bank; no need to pay again.']
  }
  const CAUSES = {
    webhook: 'the Payrails webhook',
    poll: 'the checkout poll of the execution',
    return: 'the 3-D Secure return page',
    sweep: 'the sweeper (periodic re-check)',
    place_order: 'place-order',
    pre_authorize: 'the pre-authorize checks',
    authorize: 'the authorize call',
    operator: 'an operator'
  }

  const root = document.getElementById('confirmation')
  const reference = root.dataset.reference
  const $ = id => document.getElementById(id)

  function causeOf (confirmedBy) {
    if (!confirmedBy) return ''
    return typeof confirmedBy === 'string' ? confirmedBy : confirmedBy.cause || ''
  }

  function render (order) {
    const [label, headline] = STATUS[order.status] || [order.status, 'Checking your payment…']
    const badge = $('order-status')
    badge.textContent = label
    badge.dataset.status = order.status
    $('headline').textContent = headline
    if (order.amount) $('order-total').textContent = `${order.amount.value} ${order.amount.currency}`
    $('execution-id').textContent = order.executionId || '–'
    $('failure-reason').textContent = order.failureReason || '–'
    $('updated-at').textContent = order.updatedAt ? new Date(order.updatedAt).toLocaleString() : '–'
    const cause = causeOf(order.confirmedBy)
    const confirmed = $('confirmed-by')
    confirmed.dataset.cause = cause
    confirmed.textContent = cause ? CAUSES[cause] || cause : 'not yet'
  }

  function renderMissing () {
    $('headline').textContent = 'We could not find this order.'
    $('order-status').textContent = 'unknown'
    $('order-status').dataset.status = 'not_found'
    $('live-note').textContent = ''
  }

  async function poll (delay) {
    let next = POLL_MS
    try {
      const response = await window.fetch(`/orders/${encodeURIComponent(reference)}`, {
        headers: { Accept: 'application/json' },
        cache: 'no-store'
      })
      if (response.status === 404) return renderMissing()
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const order = await response.json()
      render(order)
      if (FINAL.has(order.status) && causeOf(order.confirmedBy)) {
        $('live-note').textContent = 'This order is final.'
        return
      }
    } catch (err) {
      next = Math.min(delay * 2, MAX_BACKOFF_MS)
      $('live-note').textContent = `Could not reach the store (${err.message}); retrying…`
    }
    window.setTimeout(() => poll(next), next)
  }

  poll(POLL_MS)
})()
